import Decos
#if canImport(Glibc)
import Glibc
#endif

/// Nodes of one cluster booted in this process on loopback, for the benchmarks that call between
/// nodes: one key file for all of them (removed by `remove`).
struct LoopbackCluster {
    let keyFile = "/tmp/decos-bench-\(getpid()).key"

    init() {
        let f = fopen(keyFile, "w")
        fputs("benchmark-cluster-key-0123456789", f)
        fclose(f)
    }

    func remove() { unlink(keyFile) }

    /// Boots node `name` seeded with `seed`, with the example services `examples` (their last
    /// contract word as path: "echo" is /echo) and `attributes` added to its <Cluster>.
    func boot(_ name: String, seed: Node? = nil, examples: [String], attributes: String = "") async throws -> Node {
        let seedElement = seed.map { "<Seed address=\"127.0.0.1:\($0.clusterAddress!.port!)\"/>" } ?? ""
        let services = examples.map { "<Service contract=\"urn:decos:examples:\($0)\" name=\"/\($0)\"/>" }.joined()
        return try await Node.boot(Manifest.parse("""
        <Manifest xmlns="urn:decos:manifest" node="\(name)">
          <Network><Cluster listen="127.0.0.1:0" keyFile="\(keyFile)" \(attributes)>\(seedElement)</Cluster></Network>
          \(services)
        </Manifest>
        """))
    }
}

/// Waits until `node` lists every URI of `uris` in its cluster directory; throws after a minute.
func waitUntil(_ node: Node, lists uris: [String]) async throws {
    try await node.kernel.awaitDirectory(within: .seconds(60)) { entries in Set(uris).isSubset(of: entries.map(\.uri)) }
}
