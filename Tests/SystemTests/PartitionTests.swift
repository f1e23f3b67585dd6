import Foundation
import Testing
import TestKit

/// Two test hosts in network namespaces joined by a veth pair, made and removed by the test.
final class TwoHosts {
    let a = "decos-a-\(getpid())", b = "decos-b-\(getpid())"
    let addressA = "10.77.0.1", addressB = "10.77.0.2"

    init() throws {
        try ip("netns", "add", a)
        try ip("netns", "add", b)
        try ip("link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b", "netns", b)
        for (ns, dev, addr) in [(a, "veth-a", addressA), (b, "veth-b", addressB)] {
            try ip("-n", ns, "addr", "add", "\(addr)/24", "dev", dev)
            try ip("-n", ns, "link", "set", dev, "up")
            try ip("-n", ns, "link", "set", "lo", "up")
        }
    }

    func link(up: Bool) throws { try ip("-n", a, "link", "set", "veth-a", up ? "up" : "down") }

    func curl(in ns: String, _ url: String) throws -> String {
        try run("/usr/sbin/ip", ["netns", "exec", ns, "/usr/bin/curl", "-sS", "--max-time", "5", url]).out
    }

    deinit {
        _ = try? run("/usr/sbin/ip", ["netns", "del", a])
        _ = try? run("/usr/sbin/ip", ["netns", "del", b])
    }
}

@discardableResult
func ip(_ args: String...) throws -> String {
    let r = try run("/usr/sbin/ip", args)
    guard r.status == 0 else { throw Failure("ip \(args.joined(separator: " ")): \(r.err)") }
    return r.out
}

let canMakeNamespaces = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")

@Suite(.bounded, .ownThreads, .serialized) struct PartitionTests {
    @Test(.enabled(if: canMakeNamespaces, "needs root and iproute2 to make network namespaces (CI has both)"))
    func aPartitionSplitsTheNamespaceAndItsHealJoinsItAgain() throws {
        let hosts = try TwoHosts()
        let a = try NodeProcess(manifest: try clusterManifest(listen: "\(hosts.addressA):7946"), extra: ["--node", "a"],
                                wrapper: ["/usr/sbin/ip", "netns", "exec", hosts.a], http: "\(hosts.addressA):0")
        let b = try NodeProcess(manifest: try clusterManifest(listen: "\(hosts.addressB):7946", seeds: ["\(hosts.addressA):7946"]),
                                extra: ["--node", "b"], wrapper: ["/usr/sbin/ip", "netns", "exec", hosts.b], http: "\(hosts.addressB):0")
        func sees(_ ns: String, _ node: NodeProcess, _ host: String, _ uri: String) throws -> Bool {
            try hosts.curl(in: ns, "http://\(host):\(node.port)/directory").contains("<Uri>\(uri)</Uri>")
        }
        try waitFor("a condition", within: 60) { try sees(hosts.a, a, hosts.addressA, "decos://b/counter") && sees(hosts.b, b, hosts.addressB, "decos://a/counter") }
        try hosts.link(up: false)
        try waitFor("a condition", within: 60) { try !sees(hosts.a, a, hosts.addressA, "decos://b/counter") && !sees(hosts.b, b, hosts.addressB, "decos://a/counter") }
        try hosts.link(up: true)
        try waitFor("a condition", within: 60) { try sees(hosts.a, a, hosts.addressA, "decos://b/counter") && sees(hosts.b, b, hosts.addressB, "decos://a/counter") }
        // And calls cross again.
        let call = try hosts.curl(in: hosts.a, "http://\(hosts.addressA):\(a.port)/@b/counter")
        #expect(call.contains("<CounterState>"))
    }
}
