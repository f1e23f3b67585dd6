import Foundation
import Testing
import TestKit

/// A cluster key file for this test run.
let clusterKey: String = {
    let p = NSTemporaryDirectory() + "decos-system-\(getpid()).key"
    try! "system-test-cluster-key-0123456789".write(toFile: p, atomically: true, encoding: .utf8)
    return p
}()

/// Fast membership timings so failures are seen in a couple of seconds.
let fastTimings = #"probeInterval="300" probeTimeout="150" suspicionTimeout="1200""#

func clusterManifest(listen: String = "127.0.0.1:0", seeds: [String] = [], timings: String = fastTimings, gateway: String = "",
                     network: String = "", extra: String = "") throws -> String {
    let path = NSTemporaryDirectory() + "decos-cluster-\(UUID().uuidString).xml"
    try """
    <Manifest xmlns="urn:decos:manifest">
      <Network>
        <Gateway listen="127.0.0.1:0" \(gateway)/>
        <Cluster listen="\(listen)" keyFile="\(clusterKey)" \(timings)>
          \(seeds.map { "<Seed address=\"\($0)\"/>" }.joined())
        </Cluster>
        \(network)
      </Network>
      <Service contract="urn:decos:examples:counter" name="/counter"/>
      \(extra)
    </Manifest>
    """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

extension NodeProcess {
    /// The cluster address from the ready line.
    var clusterAddress: String {
        let line = lines.first { $0.contains("cluster on ") }!
        return String(line.split(separator: "cluster on ")[1].prefix { $0 != ";" })
    }

    func counters() throws -> Set<String> { counterURIs(inDirectory: try curl(base + "/directory").out) }
}

/// The counters a `/directory` page lists.
func counterURIs(inDirectory page: String) -> Set<String> {
    Set(page.components(separatedBy: "<Uri>").dropFirst().map { String($0.prefix { $0 != "<" }) }.filter { $0.hasSuffix("/counter") })
}

@Suite(.bounded, .ownThreads, .serialized) struct ClusterProcessTests {
    @Test func killNineRemovesANodeAndItsCallsFault() throws {
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "b"])
        let c = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "c"])
        let all: Set = ["decos://a/counter", "decos://b/counter", "decos://c/counter"]
        try waitFor("a condition", within: 60) { try a.counters() == all && b.counters() == all && c.counters() == all }
        // Remote verbs through any gateway.
        let r = try decos("ctl", "update", a.base + "/@c/counter", "--body", "<Increment><By>4</By></Increment>")
        #expect(r.out.contains("<Value>4</Value>"))
        kill(b.process.processIdentifier, SIGKILL)
        let killed = Date()
        try waitFor("a condition", within: 60) { try !a.counters().contains("decos://b/counter") && !c.counters().contains("decos://b/counter") }
        // Detection bound with these timings: 2 × 300 ms + 1200 ms, plus gossip; generous for a loaded CI.
        #expect(Date().timeIntervalSince(killed) < 10)
        let call = try decos("ctl", "get", a.base + "/@b/counter")
        #expect(call.status == 1 && call.err.contains("Unreachable"))
    }

    @Test func aNodeRestartedAtOnceIsItsNewSelfEverywhere() throws {
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "b"])
        try waitFor("a condition", within: 60) { try a.counters() == ["decos://a/counter", "decos://b/counter"] }
        // Killed and started again at once, on the same address, with one more service: before
        // anyone could notice it was gone. Its directory version, restarting with it, used to be
        // below the old one's, so its peers kept listing its old self.
        let listen = b.clusterAddress
        kill(b.process.processIdentifier, SIGKILL)
        b.process.waitUntilExit()
        let again = try NodeProcess(manifest: try clusterManifest(listen: listen, seeds: [a.clusterAddress],
                                                                  extra: #"<Service contract="urn:decos:examples:kv" name="/fresh"/>"#),
                                    extra: ["--node", "b"])
        let ready = Date()
        // Pushed on connect, or at the latest by the next anti-entropy exchange (every 2 s); before,
        // never. The wait's own bound fails the test; the figure goes in docs/reliability.md.
        _ = try waitFor("a lists b's new service", within: 60) { try curl(a.base + "/directory").out.contains("decos://b/fresh") }
        print("restarted node's new service listed after \(Date().timeIntervalSince(ready)) s")
        // One b, alive, listed once.
        let cluster = try curl(a.base + "/os/cluster").out
        #expect(cluster.components(separatedBy: "<Name>b</Name>").count == 2, "\(cluster)")
        #expect(try a.counters() == ["decos://a/counter", "decos://b/counter"])
        _ = again
    }

    @Test func aBufferGoesToAServiceOnAnotherNodeAndComesBackThroughTheFirstNodesGateway() throws {
        let echo = #"<Service contract="urn:decos:examples:echo" name="/echo"/>"#
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress], extra: echo), extra: ["--node", "b"])
        try waitFor("a lists b's echo", within: 60) { try curl(a.base + "/directory").out.contains("decos://b/echo") }
        let dir = NSTemporaryDirectory() + "decos-reply-buffers-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/back", withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let data = Data((0..<5_000_000).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try data.write(to: URL(fileURLWithPath: dir + "/photo"))
        // MTOM to a's gateway, a request to b with the buffer on the data plane, b's reply with it
        // back the same way, MTOM to the client.
        let r = try decos("ctl", "submit", a.base + "/@b/echo", "--body", "<Note>there and back</Note>", "--buffer", "photo=@\(dir)/photo",
                          "--buffer-dir", dir + "/back")
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("there and back"))
        #expect(FileManager.default.contents(atPath: dir + "/back/photo") == data)
        _ = b
    }

    @Test func garbageOnThePeerPortIsRefusedWithoutHarm() throws {
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let port = Int(a.clusterAddress.split(separator: ":").last!)!
        let v: UInt8 = 3  // the wire version (Wire.version)
        let probes: [[UInt8]] = [
            Array("GET / HTTP/1.1\r\n\r\n".utf8),                       // not our protocol: a huge "length"
            [0, 0, 0, 1, 1],                                             // frame too short
            [0, 0, 0, 6, 9, 1, 0, 0, 0, 0],                              // unknown wire version
            [0, 0, 0, 4, v, 3, 0xDE, 0xAD],                              // a request before any handshake
            [0, 0, 0, 40, v, 1] + [UInt8](repeating: 0xFF, count: 40),   // a hello full of junk
            [0, 0, 0, 10, v],                                            // truncated, then silence
        ]
        for bytes in probes {
            let conn = try RawConnection(port: port)
            _ = send(conn.fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
            #expect(conn.waitForClose(), "\(bytes)")
        }
        // A frame of a megabyte announced before the handshake: under the 16 MiB limit of an
        // authenticated peer, but nobody without the key gets to make the node wait for it.
        let big = try RawConnection(port: port)
        let announce: [UInt8] = [0, 0x10, 0, 0, v, 1]
        _ = send(big.fd, announce, announce.count, Int32(MSG_NOSIGNAL))
        let refusal = big.read { $0.contains("limit") }
        #expect(refusal?.contains("exceeds the limit of 4096") == true, "\(refusal ?? "closed")")
        // Still serving, still in one piece.
        #expect(try a.counters() == ["decos://a/counter"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "b"])
        try waitFor("a condition", within: 60) { try a.counters().contains("decos://b/counter") }
        _ = b
    }
}
