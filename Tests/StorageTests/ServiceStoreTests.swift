import Foundation
@testable import Storage
import Testing
import TestKit

/// A directory of its own for each test, removed after it.
final class Scratch {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "decos-storage-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String = "kv.db") -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite(.bounded) struct ServiceStoreTests {
    @Test func recordsStoredThroughTheJournalAreThereWhenTheFileIsOpenedAgain() async throws {
        let dir = Scratch()
        do {
            let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
            #expect(try store.load() == nil)
            try store.initialize([.init(key: "a", value: bytes("1")), .init(key: "b", value: bytes("2"))])
            let journal = Journal(store)
            _ = try await journal.append([.put("c", bytes("3")), .erase("a")]).wait().get()
            _ = try await journal.append([.put("b", bytes("two"))]).wait().get()
        }
        let again = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        #expect(try again.load() == [.init(key: "b", value: bytes("two")), .init(key: "c", value: bytes("3"))])
        #expect(try again.read("c") == bytes("3"))
        #expect(try again.read("a") == nil)
    }

    @Test func aFileWhoseFirstStateWasNeverStoredStartsAfresh() throws {
        let dir = Scratch()
        _ = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        #expect(try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv").load() == nil)
    }

    @Test func writersAppendingTogetherShareCommits() async throws {
        let dir = Scratch()
        let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        try store.initialize([])
        let journal = Journal(store)
        let tickets = (0..<1000).map { i in journal.append([.put("k\(i)", bytes("\(i)"))]) }
        for t in tickets { _ = try await t.wait().get() }
        let commits = journal.syncs.totals.count
        #expect(commits < 500, "1,000 appends took \(commits) commits")
        #expect(try store.load()?.count == 1000)
        #expect(journal.barrier() == nil)
    }

    @Test func aFileThatIsNotADatabaseIsRefusedAndKept() throws {
        let dir = Scratch()
        let junk = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try junk.write(to: URL(fileURLWithPath: dir.file()))
        #expect { try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv") } throws: { e in
            let e = e as! StorageError
            return e.kind == .refused && e.file == dir.file() && e.message.contains("damaged or not a database")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file())) == junk)
    }

    @Test func anotherProgramsDatabaseIsRefusedAndKept() throws {
        let dir = Scratch()
        let other = try SQLiteConnection(file: dir.file(), create: true)
        try other.execute("CREATE TABLE mine(x); INSERT INTO mine VALUES(42)")
        #expect { try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv") } throws: { e in
            (e as! StorageError).message.contains("not a Decos storage file")
        }
        #expect(try other.integer("SELECT x FROM mine") == 42)
    }

    @Test func aFileOfANewerSchemaOrAnotherContractIsRefused() throws {
        let dir = Scratch()
        try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv").initialize([])
        #expect { try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:counter") } throws: { e in
            (e as! StorageError).message.contains("holds the state of contract urn:test:kv, not urn:test:counter")
        }
        try SQLiteConnection(file: dir.file(), create: false).execute("PRAGMA user_version=\(ServiceStore.schema + 1)")
        #expect { try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv") } throws: { e in
            let e = e as! StorageError
            return e.kind == .refused && e.message.contains("newer release (schema \(ServiceStore.schema + 1)")
        }
    }

    @Test func aRecordWhoseBytesChangedIsRefused() throws {
        let dir = Scratch()
        let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        try store.initialize([.init(key: "a", value: bytes("hello"))])
        try SQLiteConnection(file: dir.file(), create: false).execute("UPDATE records SET value = x'68656c6c70' WHERE key = 'a'")
        #expect { try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv").load() } throws: { e in
            let e = e as! StorageError
            return e.kind == .refused && e.message.contains("\"a\" does not match its checksum")
        }
    }
}

/// A full disk, made real: a small tmpfs mounted for the test (root only, as the tests run in CI).
@Suite(.bounded, .ownThreads) struct FullDiskTests {
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullDiskFailsTheWriteThenWritesGoOnOnceThereIsRoom() async throws {
        let dir = Scratch()
        #expect(try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]).status == 0)
        defer { _ = try? runProgram("/bin/umount", [dir.path]) }
        let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        try store.initialize([.init(key: "kept", value: bytes("yes"))])
        let journal = Journal(store)
        // Fill the disk with a file of our own, so the journal's next growth has no room.
        let filler = dir.file("filler")
        _ = try runProgram("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=4k"])
        let big = [UInt8](repeating: 7, count: 256 << 10)
        let failed = await journal.append([.put("big", big)]).wait()
        guard case .failure(let error) = failed else { Issue.record("a write to a full disk succeeded"); return }
        #expect(error.kind == .full && error.file == dir.file(), "\(error)")
        // Until the service has put back what the file holds, writes fail at once…
        guard case .failure = await journal.append([.put("after", bytes("x"))]).wait() else {
            Issue.record("a write after a failure went through before recovery"); return
        }
        #expect(journal.barrier() != nil)
        // …and recovery names every key to put back.
        #expect(journal.dirtyKeys() == ["big", "after"])
        journal.recovered(["big"])
        #expect(journal.barrier() != nil, "a key not put back keeps writes refused")
        journal.recovered(["after"])
        try FileManager.default.removeItem(atPath: filler)
        _ = try await journal.append([.put("later", bytes("ok"))]).wait().get()
        #expect(try store.read("later") == bytes("ok"))
        #expect(try store.read("big") == nil)
        #expect(try store.read("kept") == bytes("yes"))
    }
}

@Suite(.bounded) struct HostileStorageTests {
    @Test func aKeyWithANulByteIsKeptWhole() async throws {
        let dir = Scratch()
        do {
            let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
            try store.initialize([])
            let journal = Journal(store)
            _ = try await journal.append([.put("a\0b", bytes("1")), .put("a\0c", bytes("2"))]).wait().get()
        }
        let again = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        #expect(try again.load()?.map(\.key) == ["a\0b", "a\0c"])
    }

    @Test func aBackupWhoseRecordsAreAViewIsRefusedAtOnce() throws {
        let dir = Scratch()
        // Our identity and meta table, and records as an endless recursive view: read, it would never end.
        let evil = try SQLiteConnection(file: dir.file("evil.db"), create: true)
        try evil.execute("""
            PRAGMA application_id=\(ServiceStore.applicationID); PRAGMA user_version=1;
            \(ServiceStore.tables[0].sql);
            INSERT INTO meta VALUES('contract', 'urn:test:kv'); INSERT INTO meta VALUES('initialized', 1);
            CREATE VIEW records AS WITH RECURSIVE r(key, value, crc) AS (SELECT 'a', x'00', 0 UNION ALL SELECT key || 'a', value, crc FROM r) SELECT * FROM r;
            """)
        #expect { try ServiceStore.backup(dir.file("evil.db"), contract: "urn:test:kv") } throws: { e in
            (e as! StorageError).message.contains("does not have this release's schema")
        }
        // A real one passes.
        let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        try store.initialize([.init(key: "k", value: bytes("v"))])
        try store.snapshot(into: dir.file("copy.db"))
        #expect(try ServiceStore.backup(dir.file("copy.db"), contract: "urn:test:kv") == [.init(key: "k", value: bytes("v"))])
    }

    @Test func readsWaitingBehindAWriteAreEachAnswered() async throws {
        let dir = Scratch()
        let store = try ServiceStore(file: dir.file(), service: "/kv", contract: "urn:test:kv")
        try store.initialize([])
        let journal = Journal(store)
        // Many waiters on one pending ticket (what concurrent Gets behind one Upsert do).
        let write = journal.append([.put("k", bytes("v"))])
        let barriers = (0..<20).compactMap { _ in journal.barrier() }
        var answered = 0
        for b in barriers + [write] { if case .success = await b.wait() { answered += 1 } }
        #expect(answered == barriers.count + 1)
    }
}
