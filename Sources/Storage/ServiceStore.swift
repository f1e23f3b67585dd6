#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The stored state of one durable service: one SQLite file (WAL, every commit synced), its
/// records each a key and a value (the service's infoset in binary form) with a CRC-32C.
///
/// One file a service, so that a damaged file stops only its own service, a backup is one
/// file, and a Drop removes one file. The file says what it is: SQLite's `application_id` is
/// "deco", `user_version` the schema, and its `meta` table the contract, so a foreign file, one of
/// a newer release or one of another service is refused, never misread or overwritten.
public final class ServiceStore: Sendable {
    /// The schema this release writes and reads. A later release that changes it migrates older
    /// files forward; this one refuses files of a later schema.
    public static let schema: Int64 = 1
    /// "deco" in SQLite's header: the file is ours.
    static let applicationID: Int64 = 0x6465_636F

    public struct Record: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public init(key: String, value: [UInt8]) {
            self.key = key
            self.value = value
        }
    }

    /// One change to the records: what a verb's handler asked to store.
    public enum Write: Sendable, Equatable {
        case put(String, [UInt8])
        case erase(String)

        public var key: String {
            switch self {
            case .put(let k, _), .erase(let k): k
            }
        }
    }

    public let file: String
    public let contract: String
    /// The writer's connection: used only by the journal's queue (`Journal`), which commits.
    let writer: SQLiteConnection
    /// The writer's statements, prepared once: a commit of one write is parsed by no one.
    private let begin, commit, rollback, put, erase: SQLiteStatement
    /// A second connection for reads beside the writer (WAL lets them run together): a key read
    /// back after a failed write, a backup.
    private let reader: Mutex<SQLiteConnection>

    /// Opens the file of the service at `path` implementing `contract`, creating it when there is
    /// none. Throws `.refused` for a file that is damaged, foreign, of a newer schema or of another
    /// contract; the file is left as it was.
    public init(file: String, service path: String, contract: String) throws(StorageError) {
        self.file = file
        self.contract = contract
        let existed = access(file, F_OK) == 0
        writer = try SQLiteConnection(file: file, create: !existed)
        let id = try writer.integer("PRAGMA application_id") ?? 0
        let tables = try writer.integer("SELECT count(*) FROM sqlite_master") ?? 0
        try writer.execute("PRAGMA synchronous=FULL")
        if id == 0 && tables == 0 {
            // New, or made by a creation that did not finish: nothing in it is anyone's data.
            try writer.execute("PRAGMA journal_mode=WAL")
            try writer.execute("""
                BEGIN IMMEDIATE;
                PRAGMA application_id=\(Self.applicationID);
                PRAGMA user_version=\(Self.schema);
                \(Self.tables.map { $0.sql + ";" }.joined(separator: "\n"));
                INSERT INTO meta VALUES('contract', '\(contract.replacing("'", with: "''"))');
                INSERT INTO meta VALUES('path', '\(path.replacing("'", with: "''"))');
                COMMIT;
                """)
            syncDirectory(of: file)
        } else {
            guard id == Self.applicationID else {
                throw StorageError(.refused, file: file, "not a Decos storage file (SQLite application_id \(id)); it is kept as it is")
            }
            let version = try writer.integer("PRAGMA user_version") ?? 0
            guard version <= Self.schema else {
                throw StorageError(.refused, file: file, "written by a newer release (schema \(version); this release reads schema \(Self.schema)); it is kept as it is")
            }
            let stored = try Self.meta("contract", writer)
            guard stored == contract else {
                throw StorageError(.refused, file: file, "holds the state of contract \(stored ?? "(none)"), not \(contract); it is kept as it is")
            }
            try writer.execute("PRAGMA journal_mode=WAL")
        }
        begin = try writer.prepare("BEGIN IMMEDIATE")
        commit = try writer.prepare("COMMIT")
        rollback = try writer.prepare("ROLLBACK")
        put = try writer.prepare("INSERT OR REPLACE INTO records(key, value, crc) VALUES(?, ?, ?)")
        erase = try writer.prepare("DELETE FROM records WHERE key = ?")
        reader = Mutex(try SQLiteConnection(file: file, create: false))
    }

    /// The schema's tables, as `sqlite_master` holds them: a file with anything else (a view, a
    /// trigger, another table) is not one this release wrote.
    static let tables: [(name: String, sql: String)] = [
        ("meta", "CREATE TABLE meta(name TEXT PRIMARY KEY, value ANY) WITHOUT ROWID"),
        ("records", "CREATE TABLE records(key TEXT PRIMARY KEY, value BLOB NOT NULL, crc INTEGER NOT NULL) WITHOUT ROWID"),
    ]

    private static func meta(_ name: String, _ c: SQLiteConnection) throws(StorageError) -> String? {
        let s = try c.prepare("SELECT value FROM meta WHERE name = ?")
        try s.bind(1, name)
        return try s.step() ? s.text(0) : nil
    }

    /// Every record, by key, each checked against its checksum; nil when the service has not
    /// stored its first state yet (`initialize`).
    public func load() throws(StorageError) -> [Record]? {
        try reader.withLock { c throws(StorageError) -> [Record]? in try Self.records(c, file: file) }
    }

    private static func records(_ c: SQLiteConnection, file: String) throws(StorageError) -> [Record]? {
        guard try meta("initialized", c) != nil else { return nil }
        let s = try c.prepare("SELECT key, value, crc FROM records ORDER BY key")
        var records: [Record] = []
        while try s.step() {
            let r = Record(key: s.text(0), value: s.blob(1))
            guard UInt32(truncatingIfNeeded: s.int64(2)) == CRC32C.record(key: r.key, value: r.value) else {
                throw StorageError(.refused, file: file, "the record \"\(r.key)\" does not match its checksum: the file is damaged; it is kept as it is")
            }
            records.append(r)
        }
        return records
    }

    /// The records of a backup of a service of `contract` (what `snapshot` wrote), read from a
    /// file that came from outside: opened read-only, trusting nothing in it, and refused unless it
    /// is exactly what this release writes (its identity, its two tables and nothing else, pages
    /// that pass SQLite's quick check, records that match their checksums).
    public static func backup(_ file: String, contract: String) throws(StorageError) -> [Record] {
        let c = try SQLiteConnection(file: file, create: false, readOnly: true)
        guard try c.integer("PRAGMA application_id") == applicationID else {
            throw StorageError(.refused, file: file, "is not a Decos storage file")
        }
        let version = try c.integer("PRAGMA user_version") ?? 0
        guard version <= schema else {
            throw StorageError(.refused, file: file, "was written by a newer release (schema \(version); this release reads schema \(schema))")
        }
        let s = try c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        var found: [(String, String, String)] = []
        while try s.step() {
            found.append((s.text(0), s.text(1), s.text(2)))
            guard found.count <= tables.count else { break }
        }
        guard found.count == tables.count, zip(found, tables).allSatisfy({ $0.0 == "table" && $0.1 == $1.name && $0.2 == $1.sql }) else {
            throw StorageError(.refused, file: file, "does not have this release's schema (tables meta and records, and nothing else)")
        }
        let stored = try meta("contract", c)
        guard stored == contract else {
            throw StorageError(.refused, file: file, "holds the state of contract \(stored ?? "(none)"), not \(contract)")
        }
        let check = try c.prepare("PRAGMA quick_check(1)")
        guard try check.step(), check.text(0) == "ok" else {
            throw StorageError(.refused, file: file, "is damaged (SQLite's quick check: \(check.text(0)))")
        }
        guard let records = try records(c, file: file) else {
            throw StorageError(.refused, file: file, "holds no stored state")
        }
        return records
    }

    /// Stores the service's first state (the manifest's, or a Create's), in one transaction.
    /// Until it is, the file holds no state and is made anew on the next start. `recreate`, for a
    /// service made at run time, is what the node makes it again from at its next start.
    public func initialize(_ records: [Record], recreate: [UInt8]? = nil) throws(StorageError) {
        try transaction { () throws(StorageError) in
            try writer.execute("DELETE FROM records")
            try apply(records.map { .put($0.key, $0.value) })
            try writer.execute("INSERT OR REPLACE INTO meta VALUES('initialized', 1)")
            if let recreate {
                let s = try writer.prepare("INSERT OR REPLACE INTO meta VALUES('recreate', ?)")
                try s.bind(1, recreate)
                try s.run()
            }
        }
    }

    /// Keeps `recreate` for a service made at run time on a file that already held its state.
    public func remember(recreate: [UInt8]) throws(StorageError) {
        try transaction { () throws(StorageError) in
            let s = try writer.prepare("INSERT OR REPLACE INTO meta VALUES('recreate', ?)")
            try s.bind(1, recreate)
            try s.run()
        }
    }

    /// What a service made at run time is made again from (`initialize`'s `recreate`), read
    /// without changing the file; nil for a service of the manifest, or a file that is not ours
    /// (which its service, if any, reports when it starts).
    public static func recreation(of file: String) -> [UInt8]? {
        guard let c = try? SQLiteConnection(file: file, create: false),
              (try? c.integer("PRAGMA application_id")) == applicationID,
              let s = try? c.prepare("SELECT value FROM meta WHERE name = 'recreate'"), (try? s.step()) == true else { return nil }
        return s.blob(0)
    }

    /// The value stored under `key`, read on the reader's connection (what is committed).
    public func read(_ key: String) throws(StorageError) -> [UInt8]? {
        try reader.withLock { c throws(StorageError) -> [UInt8]? in
            let s = try c.prepare("SELECT value FROM records WHERE key = ?")
            try s.bind(1, key)
            return try s.step() ? s.blob(0) : nil
        }
    }

    /// Writes a consistent copy of the committed state to `file` (which must not exist), while
    /// writes go on: SQLite's `VACUUM INTO` reads one snapshot of the WAL.
    public func snapshot(into copy: String) throws(StorageError) {
        try reader.withLock { c throws(StorageError) in
            try c.execute("VACUUM INTO '\(copy.replacing("'", with: "''"))'")
        }
    }

    /// Bytes the service's file and its WAL take on disk.
    public var bytes: Int {
        var total = 0
        for suffix in ["", "-wal"] {
            var st = stat()
            if stat(file + suffix, &st) == 0 { total += Int(st.st_size) }
        }
        return total
    }

    // MARK: the writer's side (the journal's queue)

    /// Runs `body` in one transaction, rolled back if it throws.
    func transaction(_ body: () throws(StorageError) -> Void) throws(StorageError) {
        try begin.run()
        do {
            try body()
            try commit.run()
        } catch {
            try? rollback.run()
            throw error
        }
    }

    /// Applies writes inside a transaction.
    func apply(_ writes: [Write]) throws(StorageError) {
        for w in writes {
            switch w {
            case .put(let key, let value):
                try put.bind(1, key)
                try put.bind(2, value)
                try put.bind(3, Int64(CRC32C.record(key: key, value: value)))
                try put.run()
            case .erase(let key):
                try erase.bind(1, key)
                try erase.run()
            }
        }
    }

    /// Removes a dropped service's file and its WAL, for good.
    public static func remove(file: String) {
        for suffix in ["", "-wal", "-shm"] { unlink(file + suffix) }
        syncDirectory(of: file)
    }
}

/// Makes a file's creation or removal durable: its directory's entry is synced too.
func syncDirectory(of file: String) {
    let dir = file.lastIndex(of: "/").map { String(file[..<$0]) } ?? "."
    let fd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}
