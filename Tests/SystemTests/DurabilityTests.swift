import Foundation
import Synchronization
import Testing
import TestKit

/// Durable services as their users rely on them: a change acknowledged is there after the node is
/// killed at any moment, and no change is applied twice.
@Suite(.bounded, .ownThreads) struct DurabilityTests {
    /// One verb in a SOAP envelope on a kept-alive connection; true once a 200 reply has come.
    static func call(_ c: RawConnection, _ path: String, _ verb: String, _ body: String) -> Bool {
        let envelope = #"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><e:Header><a:Action>urn:decos:verb:\#(verb)</a:Action></e:Header><e:Body>\#(body)</e:Body></e:Envelope>"#
        c.send("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml\r\nContent-Length: \(envelope.utf8.count)\r\n\r\n\(envelope)")
        guard let reply = c.read(until: { $0.contains("</env:Envelope>") }) else { return false }
        return reply.hasPrefix("HTTP/1.1 200 ")
    }

    /// What a writer has had acknowledged: the last value of its key, and its counter increments.
    struct Acknowledged {
        var value = 0
        var increments = 0
    }

    /// The stored state, read through the node: each writer's key's value and the counter.
    static func state(_ node: NodeProcess) throws -> (values: [String: Int], counter: Int) {
        let kv = try curl(node.base + "/kv").out
        var values: [String: Int] = [:]
        for m in kv.matches(of: #/<Key>(\w+)</Key>\s*<Value>(\d+)</Value>/#) { values[String(m.1)] = Int(m.2)! }
        guard let counter = try curl(node.base + "/counter").out.firstMatch(of: #/<Value>(\d+)</Value>/#).flatMap({ Int($0.1) }) else {
            throw Failure("the counter did not answer")
        }
        return (values, counter)
    }

    @Test func everyAcknowledgedChangeSurvivesKillNineAndNoneIsAppliedTwice() throws {
        let data = NSTemporaryDirectory() + "decos-durable-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let writers = 8, rounds = 20
        var acked = [Acknowledged](repeating: Acknowledged(), count: writers)
        var generator = SystemRandomNumberGenerator()
        for round in 1...rounds {
            let node = try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
            // What the last round acknowledged is there; at most the one change each writer had in
            // flight when the node was killed is there besides.
            let (values, counter) = try Self.state(node)
            for w in 0..<writers {
                let stored = values["w\(w)"] ?? 0
                #expect(stored == acked[w].value || stored == acked[w].value + 1,
                        "round \(round): writer \(w) had \(acked[w].value) acknowledged, the node holds \(stored)")
                acked[w].value = stored
            }
            let counted = acked.reduce(0) { $0 + $1.increments }
            #expect(counter >= counted && counter <= counted + writers,
                    "round \(round): \(counted) increments acknowledged, the counter is \(counter)")
            // The counter's extra increments (in flight at the kill) become the first writer's.
            acked[0].increments += counter - counted
            #expect(values["greeting"] == nil || round == 1)
            if round == 1 { #expect(try curl(node.base + "/kv").out.contains("<Key>greeting</Key>")) }

            let progress = Mutex(acked)
            let threads = (0..<writers).map { w in
                Thread {
                    guard let c = try? RawConnection(port: node.port, timeout: .seconds(30)) else { return }
                    while true {
                        let next = progress.withLock { $0[w].value } + 1
                        guard Self.call(c, "/kv", "Upsert", "<Entry><Key>w\(w)</Key><Value>\(next)</Value></Entry>") else { return }
                        progress.withLock { $0[w].value = next }
                        guard Self.call(c, "/counter", "Update", "<Increment><By>1</By></Increment>") else { return }
                        progress.withLock { $0[w].increments += 1 }
                    }
                }
            }
            for t in threads { t.start() }
            // Round 1 also deletes the manifest's key, which must stay deleted.
            if round == 1 { #expect(try curl("-X", "POST", "-H", "Content-Type: application/soap+xml", "--data", Self.delete, node.base + "/kv").status == 0) }
            // Kill it once some writes are through, at a random point of what follows.
            try waitFor("writes acknowledged", within: 60, every: .milliseconds(5)) {
                progress.withLock { $0.reduce(0) { $0 + $1.value } } >= acked.reduce(0) { $0 + $1.value } + writers * 3
            }
            usleep(UInt32.random(in: 0...200_000, using: &generator))
            kill(node.process.processIdentifier, SIGKILL)
            node.process.waitUntilExit()
            // Writers see their connections end; what they had acknowledged is final.
            try waitFor("writers done", within: 30) { threads.allSatisfy(\.isFinished) }
            acked = progress.withLock { $0 }
        }
        let total = acked.reduce(0) { $0 + $1.value }
        print("DurabilityTests: \(rounds) kills, \(total) acknowledged Upserts kept")
    }

    @Test func aDurableServiceCreatedAtRunTimeIsThereAfterARestartUntilDropped() throws {
        let data = NSTemporaryDirectory() + "decos-created-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        func restarted(_ node: NodeProcess) throws -> NodeProcess {
            kill(node.process.processIdentifier, SIGKILL)
            node.process.waitUntilExit()
            return try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
        }
        var node = try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
        let create = try decos("ctl", "create", node.base + "/constructor", "--body",
                               "<Create><Contract>urn:decos:examples:counter</Contract><Name>/made</Name><Partner><Name>store</Name><Uri>/kv</Uri></Partner><Durable>true</Durable></Create>")
        #expect(create.status == 0, "\(create.err)")
        #expect(try decos("ctl", "update", node.base + "/made", "--body", "<Increment><By>7</By></Increment>").status == 0)
        node = try restarted(node)
        #expect(try curl(node.base + "/made").out.contains("<Value>7</Value>"))
        #expect(try decos("ctl", "lookup", node.base + "/made").out.contains("<Uri>/kv</Uri>"))
        #expect(try decos("ctl", "drop", node.base + "/constructor", "--body", "<Drop><Service>/made</Service></Drop>").status == 0)
        node = try restarted(node)
        #expect(try decos("ctl", "get", node.base + "/made").err.contains("UnknownService"))
    }

    static let delete = #"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><e:Header><a:Action>urn:decos:verb:Delete</a:Action></e:Header><e:Body><Entry><Key>greeting</Key></Entry></e:Body></e:Envelope>"#
}

/// `decos ctl backup` and `decos ctl restore` against a node whose store is being written.
@Suite(.bounded, .ownThreads) struct BackupTests {
    @Test func aBackupTakenWhileWritesGoOnRestoresThatStateAndABadOneIsRefused() throws {
        let data = NSTemporaryDirectory() + "decos-backup-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let node = try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
        for i in 1...20 {
            #expect(try decos("ctl", "upsert", node.base + "/kv", "--body", "<Entry><Key>k\(i)</Key><Value>\(i)</Value></Entry>").status == 0)
        }
        // A writer goes on beside the backup.
        let stop = Atomic<Bool>(false), written = Atomic<Int>(0)
        let writer = Thread {
            guard let c = try? RawConnection(port: node.port) else { return }
            while !stop.load(ordering: .relaxed) {
                let n = written.load(ordering: .relaxed) + 1
                guard DurabilityTests.call(c, "/kv", "Upsert", "<Entry><Key>busy</Key><Value>\(n)</Value></Entry>") else { return }
                written.store(n, ordering: .relaxed)
            }
        }
        writer.start()
        defer { stop.store(true, ordering: .relaxed) }
        try waitFor("the writer is writing", within: 30, every: .milliseconds(5)) { written.load(ordering: .relaxed) > 0 }
        let file = data + ".backup"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let backup = try run("/bin/sh", ["-c", "\"$0\" ctl backup \"$1\" > \"$2\"", decosBinary, node.base + "/kv", file])
        #expect(backup.status == 0, "\(backup.err)")
        #expect(backup.err.contains("backup of /kv: "))
        // Changes after the backup are undone by the restore.
        #expect(try decos("ctl", "delete", node.base + "/kv", "--body", "<Entry><Key>k1</Key></Entry>").status == 0)
        #expect(try decos("ctl", "upsert", node.base + "/kv", "--body", "<Entry><Key>later</Key><Value>x</Value></Entry>").status == 0)
        stop.store(true, ordering: .relaxed)
        try waitFor("the writer stopped", within: 30) { writer.isFinished }
        let restore = try decos("ctl", "restore", node.base + "/kv", file)
        #expect(restore.status == 0, "\(restore.err)")
        let (values, _) = try DurabilityTests.state(node)
        var missing: [Int] = []
        for i in 1...20 where values["k" + String(i)] != i { missing.append(i) }
        #expect(missing.isEmpty, "\(values)")
        let kv = try curl(node.base + "/kv").out
        #expect(!kv.contains("<Key>later</Key>") && kv.contains("<Key>greeting</Key>") && kv.contains("<Key>busy</Key>"))
        #expect(restore.out.contains("<Records>\(kv.components(separatedBy: "<Entry>").count - 1)</Records>"), "\(restore.out)")

        // A backup of another contract, or bytes that are no backup, change nothing.
        let other = try decos("ctl", "restore", node.base + "/counter", file)
        #expect(other.status != 0 && other.err.contains("BadBackup") && other.err.contains("contract urn:decos:examples:kv"), "\(other.err)")
        try Data(repeating: 0x41, count: 5000).write(to: URL(fileURLWithPath: file))
        let junk = try decos("ctl", "restore", node.base + "/kv", file)
        #expect(junk.status != 0 && junk.err.contains("BadBackup"), "\(junk.err)")
        #expect(try curl(node.base + "/kv").out == kv)
        // What /os/storage and /metrics say of it.
        let storage = try curl(node.base + "/os/storage").out
        #expect(storage.contains("<Path>\(data)</Path>") && storage.contains("<File>\(data)/services/kv.db</File>"), "\(storage)")
        let metrics = try curl(node.base + "/metrics").out
        #expect(metrics.contains("decos_storage_commits_total{service=\"/kv\"}") && metrics.contains("decos_storage_free_bytes "), "\(metrics)")
        // What the restore stored is what the node has after a restart.
        kill(node.process.processIdentifier, SIGKILL)
        node.process.waitUntilExit()
        let again = try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
        #expect(try curl(again.base + "/kv").out == kv)
    }
}

@Suite(.bounded, .ownThreads) struct StorageLockTests {
    @Test func twoNodesCannotShareOneStorageDirectory() throws {
        let data = NSTemporaryDirectory() + "decos-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: data) }
        let first = try NodeProcess(manifest: "Tests/SystemTests/Fixtures/durable.xml", extra: ["--data", data])
        let second = try run(decosBinary, ["run", "Tests/SystemTests/Fixtures/durable.xml", "--http", "127.0.0.1:0", "--data", data])
        #expect(second.status != 0)
        #expect(second.err.contains("is in use by another node"), "\(second.err)")
        #expect(try curl(first.base + "/kv").out.contains("<Key>greeting</Key>"))
    }
}
