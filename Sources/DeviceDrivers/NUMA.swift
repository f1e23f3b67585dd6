import CNUMA
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The machine's NUMA topology, and placing memory on a node (libnuma). Buffer pools use it to put
/// a buffer's pages on the node of the NIC that moves them: a NIC reaching memory on another
/// node crosses the interconnect for every byte.
public enum NUMA {
    /// How many nodes the machine has (1 without NUMA).
    public static var nodes: Int { Int(cnuma_nodes()) }

    /// The node a network interface's device is attached to, from sysfs; nil for a virtual
    /// interface (no device) or where the firmware does not say (-1). A virtio NIC's device is on
    /// the virtio bus, which has no node: its PCI parent has, so the device's parents are asked
    /// in turn.
    public static func node(ofInterface name: String, sysfs: String = "/sys") -> Int? {
        var buf = [CChar](repeating: 0, count: 4096)
        guard realpath("\(sysfs)/class/net/\(name)/device", &buf) != nil else { return nil }
        var path = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        while path.hasPrefix("\(sysfs)/devices/") {
            if let text = SysFS.read("\(path)/numa_node"), let n = Int(text) { return n >= 0 ? n : nil }
            path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        }
        return nil
    }

    /// The node of every network interface whose device says which it is attached to.
    public static func interfaces(sysfs: String = "/sys") -> [String: Int] {
        var found: [String: Int] = [:]
        for name in SysFS.list("\(sysfs)/class/net") { found[name] = node(ofInterface: name, sysfs: sysfs) }
        return found
    }

    /// Asks that `count` bytes at `address`, not yet touched, come from `node`'s memory.
    public static func prefer(_ address: UnsafeMutableRawPointer, _ count: Int, node: Int) {
        _ = cnuma_prefer(address, count, Int32(node))
    }

    /// The node the page at `address` is on; nil if it is not present or there is no NUMA.
    public static func node(of address: UnsafeMutableRawPointer) -> Int? {
        let n = cnuma_node_of(address)
        return n < 0 ? nil : Int(n)
    }
}
