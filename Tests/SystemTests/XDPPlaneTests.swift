import Foundation
import Testing
import TestKit

/// The AF_XDP data plane between two node processes on a LAN of namespaces (veth to a bridge):
/// buffers go as raw frames through the XDP program and AF_XDP sockets, byte-exact, with random
/// loss on the LAN; everything else on the link (the control connection, ping) goes by the
/// kernel's stack as before. Among the fault tests, so that it never runs beside one of them:
/// their timings are bounds, and a transfer beside them takes the CPU they need.
extension FaultTests {
    /// Node i on host i, preferring AF_XDP for buffers; n0 seeds n1.
    func startPreferringXDP(_ lan: LAN) throws -> [NodeProcess] {
        try (0..<2).map { i in
            try NodeProcess(manifest: clusterManifest(listen: "\(lan.address(i)):7946", seeds: i == 0 ? [] : ["\(lan.address(0)):7946"],
                                                      gateway: #"requestTimeout="120""#, network: #"<DataPlane prefer="xdp tcp"/>"#,
                                                      extra: #"<Service contract="urn:decos:examples:echo" name="/echo"/>"#),
                            extra: ["--node", "n\(i)"], wrapper: ["/usr/sbin/ip", "netns", "exec", lan.hosts[i]], http: "127.0.0.1:7480")
        }
    }

    func page(_ lan: LAN, _ i: Int, _ path: String) throws -> String {
        try lan.exec(i, ["/usr/bin/curl", "-sS", "--max-time", "5", "http://127.0.0.1:7480" + path]).out
    }

    /// What node i's `/os/dataplane` says of `peer` on `plane`: field name → value.
    func traffic(_ lan: LAN, at i: Int, with peer: String, on plane: String) throws -> [String: String] {
        let text = try page(lan, i, "/os/dataplane")
        guard let start = text.range(of: "<Peer><Node>\(peer)</Node><Plane>\(plane)</Plane>"),
              let end = text[start.upperBound...].range(of: "</Peer>") else { return [:] }
        var fields: [String: String] = [:]
        for m in text[start.lowerBound..<end.lowerBound].matches(of: /<(\w+)>([^<]*)<\/\1>/) { fields[String(m.1)] = String(m.2) }
        return fields
    }

    /// n0's self-test: a buffer of `bytes` to n1, checksummed on both sides.
    func sendTest(_ lan: LAN, bytes: Int) throws -> String {
        let r = try lan.exec(0, [decosBinary, "ctl", "submit", "http://127.0.0.1:7480/os/dataplane",
                                 "--body", "<SendTest><To>decos://n1/os/dataplane</To><Bytes>\(bytes)</Bytes></SendTest>"])
        return r.out + r.err
    }

    @Test(.enabled(if: canUseNftables, "needs root, iproute2 and nftables to make a LAN of namespaces (CI has them)"))
    func buffersGoByAFXDPWholeUnderLossAndOtherTrafficIsUntouched() throws {
        let lan = try LAN(hosts: 2)
        let nodes = try startPreferringXDP(lan)
        _ = try waitFor("n0 and n1 forming one cluster", within: 30) {
            try page(lan, 0, "/directory").contains("decos://n1/counter") && page(lan, 1, "/directory").contains("decos://n0/counter")
        }
        let planes = try page(lan, 0, "/os/dataplane")
        #expect(planes.contains("<Offered>xdp tcp</Offered>"), "\(planes)")
        #expect(planes.contains("<Choice><Node>n1</Node><Offers>tcp xdp</Offers><Chosen>xdp</Chosen></Choice>"), "\(planes)")

        // 64 MiB, byte-exact, as raw frames.
        let clean = try sendTest(lan, bytes: 64 << 20)
        #expect(clean.contains("<Intact>true</Intact>") && clean.contains("<Bytes>\(64 << 20)</Bytes>"), "\(clean)")
        #expect(try traffic(lan, at: 1, with: "n0", on: "xdp")["Received"] == "1")
        #expect(try traffic(lan, at: 0, with: "n1", on: "xdp")["BytesSent"] == String(64 << 20))

        // A reply's buffers come back the same way: 8 MiB through n0's gateway to n1's /echo,
        // which returns it; n0 pulls the reply's buffer from n1 as raw frames too.
        let dir = NSTemporaryDirectory() + "decos-xdp-reply-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/back", withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let blob = Data((0..<(8 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try blob.write(to: URL(fileURLWithPath: dir + "/blob"))
        let echoed = try lan.exec(0, [decosBinary, "ctl", "submit", "http://127.0.0.1:7480/@n1/echo", "--body", "<Note>back by AF_XDP</Note>",
                                      "--buffer", "blob=@\(dir)/blob", "--buffer-dir", dir + "/back"])
        #expect(echoed.status == 0 && echoed.out.contains("back by AF_XDP"), "\(echoed.out)\(echoed.err)")
        #expect(FileManager.default.contents(atPath: dir + "/back/blob") == blob)
        #expect(try traffic(lan, at: 1, with: "n0", on: "xdp")["Received"] == "2")
        #expect(try traffic(lan, at: 0, with: "n1", on: "xdp")["Received"] == "1", "the reply's buffer did not come by AF_XDP")

        // Frames not ours pass the XDP program to the kernel's stack: ping, and the calls and
        // membership that kept the cluster whole meanwhile.
        let ping = try lan.exec(0, ["/usr/bin/ping", "-c", "3", "-i", "0.2", "-W", "2", lan.address(1)])
        #expect(ping.status == 0, "\(ping.out)\(ping.err)")

        // 3% of every frame on the LAN lost: the buffer still arrives whole, lost chunks sent again.
        try lan.bridgeLoss(percent: 3)
        let lossy = try sendTest(lan, bytes: 32 << 20)
        try lan.bridgeLoss(percent: 0)
        #expect(lossy.contains("<Intact>true</Intact>"), "\(lossy)")
        let sent = try traffic(lan, at: 0, with: "n1", on: "xdp")
        #expect((Int(sent["Resent"] ?? "") ?? 0) > 0, "no chunk was sent again: did the loss reach the frames? \(sent)")
        #expect(sent["Offered"] == "0" && sent["Sending"] == "0", "\(sent)")
        #expect(try traffic(lan, at: 1, with: "n0", on: "xdp")["Received"] == "3")
        for n in nodes { #expect(n.process.isRunning) }
    }
}
