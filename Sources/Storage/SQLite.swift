import CSQLite

/// One connection to one SQLite database file, used by one thread at a time (its owner says which).
///
/// `@unchecked Sendable`: a connection is handed between threads (opened on one, then used only
/// by the journal's writer queue, or under the store's read lock), never used by two at once.
/// It is opened with SQLITE_OPEN_FULLMUTEX, so SQLite's own state is never raced, though a
/// statement's bind-step-reset sequence is its owner's to keep whole.
final class SQLiteConnection: @unchecked Sendable {
    let file: String
    // The sqlite3 handle this object owns: opened in init, closed in deinit, used by no one else.
    private let db: OpaquePointer

    /// Opens `file`, creating it when `create` is set; `readOnly`, for a file from outside (a
    /// backup), opens it for reading only, in defensive mode, trusting nothing in its schema.
    init(file: String, create: Bool, readOnly: Bool = false) throws(StorageError) {
        self.file = file
        var handle: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)) | SQLITE_OPEN_FULLMUTEX
        let rc = sqlite3_open_v2(file, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(handle)
            throw SQLiteConnection.error(rc, file: file, message)
        }
        db = handle
        sqlite3_extended_result_codes(db, 1)
        if readOnly {
            decos_sqlite_defensive(db)
            sqlite3_exec(db, "PRAGMA trusted_schema=OFF", nil, nil, nil)
        }
        // A writer that finds the file locked (a backup reading it) waits, rather than failing at once.
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { sqlite3_close_v2(db) }

    /// Runs statements that return no rows.
    func execute(_ sql: String) throws(StorageError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(message)
            throw Self.error(rc, file: file, text)
        }
    }

    func prepare(_ sql: String) throws(StorageError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure(rc) }
        return SQLiteStatement(statement, connection: self)
    }

    /// The first column of the first row of `sql` as an integer (a PRAGMA's value), nil if no row.
    func integer(_ sql: String) throws(StorageError) -> Int64? {
        let s = try prepare(sql)
        return try s.step() ? s.int64(0) : nil
    }

    /// The error SQLite reports for `rc` on this connection, in its words.
    func failure(_ rc: Int32) -> StorageError {
        Self.error(rc, file: file, String(cString: sqlite3_errmsg(db)))
    }

    static func error(_ rc: Int32, file: String, _ message: String) -> StorageError {
        switch rc & 0xff {
        case SQLITE_FULL: StorageError(.full, file: file, "the disk is full (\(message))")
        case SQLITE_CORRUPT, SQLITE_NOTADB: StorageError(.refused, file: file, "the file is damaged or not a database (\(message))")
        default: StorageError(.failed, file: file, message)
        }
    }
}

/// A prepared statement of one connection, reset and bound again for each use.
///
/// `@unchecked Sendable` for the same reason as its connection, which it belongs to.
final class SQLiteStatement: @unchecked Sendable {
    // The statement this object owns, finalized in deinit.
    private let statement: OpaquePointer
    private let connection: SQLiteConnection

    init(_ statement: OpaquePointer, connection: SQLiteConnection) {
        self.statement = statement
        self.connection = connection
    }

    deinit { sqlite3_finalize(statement) }

    func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    func bind(_ index: Int32, _ value: Int64) throws(StorageError) { try check(sqlite3_bind_int64(statement, index, value)) }
    /// Text by its bytes and their count (not up to a NUL: a key may hold one).
    func bind(_ index: Int32, _ value: String) throws(StorageError) {
        var value = value
        try check(value.withUTF8 { b in
            // An empty string still needs a non-null pointer, or SQLite stores NULL.
            let bytes = UnsafeRawPointer(b.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
            return sqlite3_bind_text64(statement, index, bytes, UInt64(b.count), decos_sqlite_transient(), UInt8(SQLITE_UTF8))
        })
    }
    func bind(_ index: Int32, _ value: [UInt8]) throws(StorageError) {
        try check(value.withUnsafeBytes { b in
            // A zero-length blob still needs a non-null pointer, or SQLite stores NULL.
            sqlite3_bind_blob64(statement, index, b.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(b.count), decos_sqlite_transient())
        })
    }

    /// A bind that SQLite refused (SQLITE_TOOBIG: a value over its limit) is an error, not a NULL.
    private func check(_ rc: Int32) throws(StorageError) {
        if rc != SQLITE_OK { throw connection.failure(rc) }
    }

    /// Steps once: true with a row to read, false when done.
    func step() throws(StorageError) -> Bool {
        let rc = sqlite3_step(statement)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.failure(rc)
        }
    }

    /// Steps a statement that returns no rows, then resets it.
    func run() throws(StorageError) {
        defer { reset() }
        _ = try step()
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }
    /// Text by its byte count (a NUL inside it is kept).
    func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(statement, column) else { return "" }
        let n = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(statement, column))
        guard n > 0, let p = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}
