// SQLite (Debian's libsqlite3-dev; linked statically in `make static`), the engine that keeps
// durable services' state (Sources/Storage).
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift cannot import.
static inline sqlite3_destructor_type decos_sqlite_transient(void) { return SQLITE_TRANSIENT; }

// sqlite3_db_config is variadic, which Swift cannot call: defensive mode (no writes to the schema
// or shadow tables, no PRAGMA writable_schema), for a file that came from outside (a backup).
static inline int decos_sqlite_defensive(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0);
}
