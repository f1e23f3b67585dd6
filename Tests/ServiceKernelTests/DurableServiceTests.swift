import Foundation
import Infoset
import ServiceKernel
import StandardServices
import Storage
import Synchronization
import Testing
import TestKit

/// A kernel whose storage is `dir`: a node's, as one started on the same directory again sees it.
private func kernel(storage dir: String?) -> Kernel {
    if let dir { try? FileManager.default.createDirectory(atPath: dir + "/services", withIntermediateDirectories: true) }
    return Kernel(node: "n1", security: SecurityManager(policy: nil, exposed: false),
                  contracts: StandardContracts.all.merging(Contracts([Recorder.self, CannotStart.self])), storage: dir.map(ServiceFiles.init))
}

/// A durable service whose start fails, as a misconfigured one's does.
actor CannotStart: DurableService {
    static let contract = "urn:test:cannot-start"
    init(config: ServiceConfig) {}
    func start(_ context: ServiceContext) async throws { throw Fault(.receiver, "Broken", "cannot start") }
    func handle(_ request: Request) throws -> Element? { nil }
    func records() throws -> [StoredRecord] { [StoredRecord("state", Element("S"))] }
    func restore(_ key: String, _ record: Element?) throws {}
}

private func entry(_ key: String, _ value: String? = nil) -> Element {
    var e = Element("Entry", children: [.element(Element("Key", text: key))])
    if let value { e.children.append(.element(Element("Value", text: value))) }
    return e
}

private func durableKV(_ state: Element? = nil) -> ServiceConfig {
    var c = ServiceConfig(contract: KeyValueStore.contract, name: "/kv", state: state)
    c.durable = true
    return c
}

private func values(_ k: Kernel) async throws -> [String: String] {
    let state = try await k.call(.get, "/kv")
    var out: [String: String] = [:]
    for e in state?.elements ?? [] { out[e.child("Key")?.text ?? ""] = e.child("Value")?.text ?? "" }
    return out
}

final class StorageDirectory {
    let path = NSTemporaryDirectory() + "decos-durable-\(UUID().uuidString)"
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite(.bounded) struct DurableServiceTests {
    @Test func aDurableServiceStartsFromWhatItStoredNotFromTheManifest() async throws {
        let dir = StorageDirectory()
        let initial = Element("KVState", children: [.element(entry("greeting", "hello"))])
        do {
            let k = kernel(storage: dir.path)
            try await k.create(durableKV(initial))
            _ = try await k.call(.upsert, "/kv", body: entry("a", "1"))
            _ = try await k.call(.delete, "/kv", body: entry("greeting"))
            await k.shutdown()
        }
        let again = kernel(storage: dir.path)
        try await again.create(durableKV(initial))
        #expect(try await values(again) == ["a": "1"])
    }

    @Test func subscribersAreToldOfEachChangeOnceStoredInTheOrderStored() async throws {
        let dir = StorageDirectory()
        let k = kernel(storage: dir.path)
        try await k.create(durableKV())
        let stream = try k.subscribe("/kv", as: .system)
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<50 { g.addTask { _ = try? await k.call(.upsert, "/kv", body: entry("k", String(i))) } }
        }
        var told: [String] = []
        for await n in stream {
            told.append(n.body?.child("Value")?.text ?? "")
            if told.count == 50 { break }
        }
        // The last told is the value stored, and a Get after the replies sees it.
        let stored = try #require(try ServiceStore(file: dir.path + "/services/kv.db", service: "/kv", contract: KeyValueStore.contract).read("k"))
        var r = ByteReader(stored)
        #expect(try BinaryInfoset.decode(&r).child("Value")?.text == told.last)
        #expect(try await values(k)["k"] == told.last)
        #expect(Set(told).count == 50)
    }

    @Test func readsAndWritesTogetherAreEachAnswered() async throws {
        let dir = StorageDirectory()
        let k = kernel(storage: dir.path)
        try await k.create(durableKV())
        final class Answered: Sendable { let count = Atomic<Int>(0) }
        let answered = Answered()
        for i in 0..<100 {
            let m = i % 2 == 0 ? Message(.upsert, to: "/kv", body: entry("k\(i)", "v")) : Message(.get, to: "/kv")
            Task { if await k.send(m, as: .system).fault == nil { answered.count.add(1, ordering: .relaxed) } }
        }
        try await until("every Get and Upsert answered", within: .seconds(60)) { answered.count.load(ordering: .relaxed) == 100 }
    }

    @Test func aRestoreIsToldToSubscribersAndAFailedCreateLeavesNothingStored() async throws {
        let dir = StorageDirectory()
        let k = kernel(storage: dir.path)
        try await k.create(durableKV())
        _ = try await k.call(.upsert, "/kv", body: entry("a", "1"))
        let copy = try await k.backup("/kv")
        _ = try await k.call(.upsert, "/kv", body: entry("b", "2"))
        let stream = try k.subscribe("/kv", as: .system)
        #expect(try await k.restore("/kv", from: copy) == 1)
        var told: Message?
        for await n in stream { told = n; break }
        #expect(told?.verb == .replace && told?.kind == .notification)
        #expect(try await values(k) == ["a": "1"])

        var broken = ServiceConfig(contract: CannotStart.contract, name: "/broken")
        broken.durable = true
        await #expect { try await k.create(broken, for: Request(message: Message(.create, to: "/constructor"), principal: .system)) } throws: { _ in true }
        #expect(!FileManager.default.fileExists(atPath: ServiceFiles(directory: dir.path).file(for: "/broken")))
        #expect(ServiceFiles(directory: dir.path).recreations().isEmpty)
    }

    @Test func dropRemovesTheStoredStateAndTheNextCreateStartsAfresh() async throws {
        let dir = StorageDirectory()
        let k = kernel(storage: dir.path)
        try await k.create(durableKV())
        _ = try await k.call(.upsert, "/kv", body: entry("a", "1"))
        try await k.drop("/kv")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/services/kv.db"))
        try await k.create(durableKV())
        #expect(try await values(k) == [:])
    }

    @Test func aDurableServiceNeedsStorageADurableContractAndAName() async throws {
        let bare = kernel(storage: nil)
        await #expect { try await bare.create(durableKV()) } throws: { ($0 as? Fault)?.subcode?.local == "NoStorage" }
        let dir = StorageDirectory()
        let k = kernel(storage: dir.path)
        var recorder = ServiceConfig(contract: Recorder.contract, name: "/rec")
        recorder.durable = true
        await #expect { try await k.create(recorder) } throws: { ($0 as? Fault)?.subcode?.local == "NotDurable" }
        var unnamed = durableKV()
        unnamed.name = nil
        await #expect { try await k.create(unnamed) } throws: { ($0 as? Fault)?.reason.contains("needs a name") == true }
    }

    @Test func aDamagedFileStopsItsServiceAndIsKept() async throws {
        let dir = StorageDirectory()
        do {
            let k = kernel(storage: dir.path)
            try await k.create(durableKV())
            _ = try await k.call(.upsert, "/kv", body: entry("a", "1"))
            await k.shutdown()
        }
        let file = dir.path + "/services/kv.db"
        // Make it a file of some other program's: bytes no SQLite reads.
        let junk = Data(repeating: 0xAB, count: 4096)
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
        try junk.write(to: URL(fileURLWithPath: file))
        let k = kernel(storage: dir.path)
        await #expect { try await k.create(durableKV()) } throws: { e in
            let f = e as? Fault
            return f?.subcode?.local == "StorageRefused" && f?.reason.contains(file) == true
        }
        #expect(FileManager.default.contents(atPath: file) == junk)
        #expect(k.uris.lookup("/kv") == nil)
        try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
        #expect(try await k.call(.get, "/counter")?.child("Value")?.text == "0")
    }
}

/// A full disk under a durable service: a small tmpfs mounted for the test (root, as in CI).
@Suite(.bounded, .ownThreads) struct DurableFullDiskTests {
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aChangeThatCannotBeStoredIsAFaultAndIsNotMade() async throws {
        let dir = StorageDirectory()
        try FileManager.default.createDirectory(atPath: dir.path, withIntermediateDirectories: true)
        #expect(try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]).status == 0)
        defer { _ = try? runProgram("/bin/umount", [dir.path]) }
        let k = kernel(storage: dir.path)
        try await k.create(durableKV())
        _ = try await k.call(.upsert, "/kv", body: entry("a", "1"))
        let filler = dir.path + "/filler"
        _ = try runProgram("/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=4k"])
        let big = String(repeating: "x", count: 300_000)
        let refused = await k.send(Message(.upsert, to: "/kv", body: entry("a", big)), as: .system)
        #expect(refused.fault?.subcode?.local == "StorageFailed", "\(refused)")
        #expect(refused.fault?.code == .receiver)
        #expect(refused.fault?.reason.contains("disk is full") == true)
        // The change is not made: the old value is what a Get sees.
        #expect(try await values(k) == ["a": "1"])
        // Room again: writes go on.
        try FileManager.default.removeItem(atPath: filler)
        _ = try await k.call(.upsert, "/kv", body: entry("b", "2"))
        #expect(try await values(k) == ["a": "1", "b": "2"])
    }
}
