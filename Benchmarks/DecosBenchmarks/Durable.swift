// `decos-bench durable [DIR]`: durable Upserts against the same service kept in memory, and
// against SQLite's own insert rate with the same settings (WAL, synchronous=FULL) in the same run;
// then the restart of a service holding a million keys. DIR (default /var/tmp) must be on the
// disk being measured: its fsync is the floor.
import CSQLite
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Infoset
import ServiceKernel
import StandardServices
import Storage

private func nanoseconds() -> Int64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
}

/// SQLite alone: `n` inserts of 100-byte values, `perCommit` to a transaction, one writer.
private func engineRate(_ file: String, n: Int, perCommit: Int) -> Double {
    for suffix in ["", "-wal", "-shm"] { unlink(file + suffix) }
    var db: OpaquePointer?
    precondition(sqlite3_open(file, &db) == SQLITE_OK)
    defer { sqlite3_close(db); for suffix in ["", "-wal", "-shm"] { unlink(file + suffix) } }
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE records(key TEXT PRIMARY KEY, value BLOB NOT NULL, crc INTEGER NOT NULL) WITHOUT ROWID", nil, nil, nil)
    var insert: OpaquePointer?
    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO records VALUES(?, ?, 0)", -1, &insert, nil)
    defer { sqlite3_finalize(insert) }
    let value = [UInt8](repeating: 7, count: 100)
    let start = nanoseconds()
    var i = 0
    while i < n {
        sqlite3_exec(db, "BEGIN", nil, nil, nil)
        for _ in 0..<perCommit {
            sqlite3_bind_text(insert, 1, "k\(i % 1000)", -1, decos_sqlite_transient())
            value.withUnsafeBytes { _ = sqlite3_bind_blob(insert, 2, $0.baseAddress, Int32($0.count), decos_sqlite_transient()) }
            sqlite3_step(insert)
            sqlite3_reset(insert)
            i += 1
        }
        sqlite3_exec(db, "COMMIT", nil, nil, nil)
    }
    return Double(n) / (Double(nanoseconds() - start) / 1e9)
}

/// `clients` tasks Upserting `n` in all to /kv of `kernel`: the rate and the p99 of a call.
private func upserts(_ kernel: Kernel, clients: Int, n: Int) async -> (rate: Double, p99: Double) {
    let value = String(repeating: "v", count: 80)
    let start = nanoseconds()
    let latencies = await withTaskGroup(of: [Int64].self) { group in
        for c in 0..<clients {
            group.addTask {
                var mine: [Int64] = []
                for i in 0..<(n / clients) {
                    let body = Element("Entry", children: [.element(Element("Key", text: "c\(c)-\(i % 100)")), .element(Element("Value", text: value))])
                    let t = nanoseconds()
                    let reply = await kernel.send(Message(.upsert, to: "/kv", body: body), as: .system)
                    precondition(reply.fault == nil, "\(reply.fault!)")
                    mine.append(nanoseconds() - t)
                }
                return mine
            }
        }
        var all: [Int64] = []
        for await l in group { all += l }
        return all.sorted()
    }
    let took = Double(nanoseconds() - start) / 1e9
    return (Double(latencies.count) / took, Double(latencies[latencies.count * 99 / 100]) / 1e3)
}

private func kernel(storage dir: String?) -> Kernel {
    Kernel(node: "bench", security: SecurityManager(policy: nil, exposed: false), contracts: StandardContracts.all,
           storage: dir.map(ServiceFiles.init))
}

private func kv(durable: Bool) -> ServiceConfig {
    var c = ServiceConfig(contract: KeyValueStore.contract, name: "/kv")
    c.durable = durable
    return c
}

func durableBenchmark(directory: String) async throws {
    let dir = directory + "/decos-bench-durable-\(getpid())"
    mkdir(dir, 0o700)
    mkdir(dir + "/services", 0o700)
    defer { ServiceStore.remove(file: dir + "/services/kv.db"); rmdir(dir + "/services"); rmdir(dir) }
    let floor1 = engineRate(dir + "/engine.db", n: 2000, perCommit: 1)
    let floor64 = engineRate(dir + "/engine.db", n: 64 * 200, perCommit: 64)
    print("engine    SQLite WAL FULL, 1 insert a commit:   \(human(floor1)); 64 a commit: \(human(floor64))")
    let memory = kernel(storage: nil), durable = kernel(storage: dir)
    try await memory.create(kv(durable: false))
    try await durable.create(kv(durable: true))
    for clients in [1, 16, 64] {
        let m = await upserts(memory, clients: clients, n: clients * 2000)
        let d = await upserts(durable, clients: clients, n: max(2000, clients * 100))
        print("upsert    \(clients) clients: durable \(human(d.rate)) p99 \(fmt(d.p99, 0)) µs; in memory \(human(m.rate)) p99 \(fmt(m.p99, 0)) µs; durable / engine (1 a commit) \(fmt(d.rate / floor1))x")
    }
    await durable.shutdown()

    // A million keys: stored once, then the service started on them as a node's restart does.
    let million = 1_000_000
    let store = try ServiceStore(file: dir + "/services/kv.db", service: "/kv", contract: KeyValueStore.contract)
    var records: [ServiceStore.Record] = []
    records.reserveCapacity(million)
    for i in 0..<million {
        let key = "key-\(i)"
        let e = Element("Entry", children: [.element(Element("Key", text: key)), .element(Element("Value", text: "value-\(i)"))])
        records.append(.init(key: key, value: BinaryInfoset.encode(e)))
    }
    try store.initialize(records)
    records = []
    let restarted = kernel(storage: dir)
    let start = nanoseconds()
    try await restarted.create(kv(durable: true))
    let took = Double(nanoseconds() - start) / 1e9
    print("restart   /kv with \(million) keys: \(fmt(took)) s to serve again (read, checked, restored)")
}
