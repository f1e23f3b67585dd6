/// A node's buffer pools, one per NUMA node: a buffer lands in the pool of the node its NIC is
/// attached to. On a machine with one node (or none) there is one pool.
public final class BufferPools: Sendable {
    /// By NUMA node.
    public let pools: [BufferPool]
    /// The NUMA node of each network interface attached to a device that has one.
    public let interfaces: [String: Int]

    /// `nodes` pools of `limit` bytes each, with `reserve` bytes mapped in each pool that serves
    /// an interface (and in the first), placed by `placement` where there is NUMA.
    public init(nodes: Int = 1, interfaces: [String: Int] = [:], limit: Int = BufferPool.defaultLimit, reserve: Int = 0,
                placement: BufferPool.Placement? = nil) {
        let count = max(1, nodes)
        pools = (0..<count).map { BufferPool(limit: limit, node: $0, placement: count > 1 ? placement : nil) }
        self.interfaces = interfaces.filter { $0.value < count }
        if reserve > 0 {
            for n in Set([0] + self.interfaces.values).sorted() { pools[n].reserve(reserve) }
        }
    }

    /// The pool of the first node: for buffers no NIC is known to move.
    public var first: BufferPool { pools[0] }

    /// The pool buffers moved by interface `name` land in.
    public func pool(forInterface name: String?) -> BufferPool {
        name.flatMap { interfaces[$0] }.map { pools[$0] } ?? first
    }

    public var usage: [BufferPool.Usage] {
        pools.map { p in
            var u = p.usage
            u.interface = interfaces.filter { $0.value == p.node }.keys.sorted()
            return u
        }
    }
}
