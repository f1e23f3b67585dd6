#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the data planes need to know of a network interface: its hardware address and MTU (for
/// raw frames), its receive queues (an AF_XDP socket per queue), read from sysfs.
public struct NetworkInterface: Sendable, Equatable {
    public var name: String
    public var mac: [UInt8]
    public var mtu: Int
    public var receiveQueues: Int

    /// The interface called `name`, or nil if sysfs does not show it with an Ethernet address.
    public init?(_ name: String) {
        let dir = "/sys/class/net/\(name)"
        guard let octets = SysFS.read("\(dir)/address").flatMap(MAC.bytes), let mtu = SysFS.read("\(dir)/mtu").flatMap({ Int($0) }) else { return nil }
        self.name = name
        self.mac = octets
        self.mtu = mtu
        receiveQueues = max(1, SysFS.list("\(dir)/queues").filter { $0.hasPrefix("rx-") }.count)
    }

    /// Whether it is the loopback interface (nothing leaves the machine on it).
    public var isLoopback: Bool { mac == [0, 0, 0, 0, 0, 0] }

    /// The interface holding the IPv4 or IPv6 address written as `text`, if this host has one.
    public static func holding(address text: String) -> String? {
        guard var storage = socketAddress(text) else { return nil }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { holding($0) } }
    }

    /// One of an interface's subnets: an address and its netmask, as bytes (4 or 16).
    public struct Subnet: Sendable, Equatable {
        public var address: [UInt8]
        public var mask: [UInt8]

        /// Whether `address` (IPv4 or IPv6, written out) is on this subnet.
        public func contains(_ address: String) -> Bool {
            guard var parsed = NetworkInterface.socketAddress(address) else { return false }
            let peer = withUnsafePointer(to: &parsed) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { NetworkInterface.bytes($0) } }
            return peer.count == self.address.count && zip(zip(self.address, peer), mask).allSatisfy { ($0.0 ^ $0.1) & $1 == 0 }
        }
    }

    /// The interface's subnets now (getifaddrs): hosts on them are reached without a router, so
    /// raw Ethernet frames reach them too.
    public func subnets() -> [Subnet] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [Subnet] = []
        var next = list
        while let entry = next {
            next = entry.pointee.ifa_next
            guard String(cString: entry.pointee.ifa_name) == name, let a = entry.pointee.ifa_addr, let m = entry.pointee.ifa_netmask,
                  a.pointee.sa_family == m.pointee.sa_family else { continue }
            let subnet = Subnet(address: Self.bytes(a), mask: Self.bytes(m))
            if !subnet.address.isEmpty, subnet.address.count == subnet.mask.count { found.append(subnet) }
        }
        return found
    }

    /// Whether `address` (IPv4 or IPv6, written out) is on one of the interface's subnets now.
    public func onLink(_ address: String) -> Bool { subnets().contains { $0.contains(address) } }

    /// The socket address of an IPv4 or IPv6 address written out.
    static func socketAddress(_ text: String) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        let parsed = withUnsafeMutablePointer(to: &storage) { p -> Bool in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                v4.pointee.sin_family = sa_family_t(AF_INET)
                return inet_pton(AF_INET, text, &v4.pointee.sin_addr) == 1
            } || p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                v6.pointee.sin6_family = sa_family_t(AF_INET6)
                return inet_pton(AF_INET6, text, &v6.pointee.sin6_addr) == 1
            }
        }
        return parsed ? storage : nil
    }

    /// An address's bytes (4 for IPv4, 16 for IPv6, none for another family). The sockets API
    /// passes addresses as `sockaddr`, to be read as the `sockaddr_in`/`_in6` the family says.
    static func bytes(_ p: UnsafePointer<sockaddr>) -> [UInt8] {
        switch Int32(p.pointee.sa_family) {
        case AF_INET: p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } }
        case AF_INET6: p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } }
        default: []
        }
    }

    /// The interface holding `address` (its port is ignored), by matching it against the
    /// interfaces' addresses (getifaddrs). The pointer rebinding is the sockets API's own way of
    /// passing addresses: a `sockaddr` is read as the `sockaddr_in`/`_in6` its family says it is.
    public static func holding(_ address: UnsafePointer<sockaddr>) -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        func same(_ a: UnsafePointer<sockaddr>) -> Bool {
            guard a.pointee.sa_family == address.pointee.sa_family else { return false }
            switch Int32(a.pointee.sa_family) {
            case AF_INET:
                return a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { x in
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { y in x.pointee.sin_addr.s_addr == y.pointee.sin_addr.s_addr } }
            case AF_INET6:
                return a.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { x in
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { y in
                        withUnsafeBytes(of: x.pointee.sin6_addr) { Array($0) } == withUnsafeBytes(of: y.pointee.sin6_addr) { Array($0) } } }
            default: return false
            }
        }
        var next = list
        while let entry = next {
            if let a = entry.pointee.ifa_addr, same(a) { return String(cString: entry.pointee.ifa_name) }
            next = entry.pointee.ifa_next
        }
        return nil
    }
}

/// A MAC address as the kernel writes it (`02:00:0a:4e:00:01`) and as six bytes.
public enum MAC {
    /// The six bytes of `text`, or nil if it is not six hex octets.
    public static func bytes(_ text: String) -> [UInt8]? {
        let octets = text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
        return octets.count == 6 ? octets : nil
    }

    /// `bytes` written with two lowercase hex digits each, colon-separated.
    public static func text(_ bytes: [UInt8]) -> String {
        bytes.map { let h = String($0, radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: ":")
    }
}
