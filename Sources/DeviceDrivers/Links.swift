import Addresses
import ProcessKernel
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A network interface as rtnetlink reports it.
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    public var mac: String
    public var mtu: Int
    public var up: Bool
    /// The carrier is there (IFF_LOWER_UP).
    public var carrier: Bool
    public var loopback: Bool
    /// ARPHRD_* type: 1 is Ethernet.
    public var hardwareType: UInt16
    public var addresses: [IPv4CIDR]
}

/// Links, addresses and routes over rtnetlink (NETLINK_ROUTE): what `ip link/addr/route` do.
public final class RouteNetlink {
    let socket: NetlinkSocket

    public init() throws(NetlinkError) { socket = try NetlinkSocket(protocol: 0 /* NETLINK_ROUTE */) }

    /// Every link with its IPv4 addresses.
    public func links() throws(NetlinkError) -> [Link] {
        var body = NetlinkBuilder()
        body.u8(UInt8(AF_UNSPEC)); body.u8(0); body.u16(0); body.u32(0); body.u32(0); body.u32(0)
        var links: [Link] = []
        for m in try socket.request(type: 18 /* RTM_GETLINK */, flags: 0x300 /* NLM_F_DUMP */, body: body.bytes, what: "list links") where m.payload.count >= 16 {
            let attrs = m.attributes(after: 16)
            let flags = m.payload.u32(8)
            let mac = MAC.text(attrs[1] ?? [])
            links.append(Link(index: Int32(bitPattern: m.payload.u32(4)), name: (attrs[3] ?? []).cString, mac: mac,
                              mtu: Int(attrs[4].flatMap { $0.count >= 4 ? $0.u32(0) : nil } ?? 0), up: flags & 1 != 0, carrier: flags & 0x10000 != 0,
                              loopback: flags & 8 != 0, hardwareType: m.payload.u16(2), addresses: []))
        }
        var addr = NetlinkBuilder()
        addr.u8(UInt8(AF_INET)); addr.u8(0); addr.u8(0); addr.u8(0); addr.u32(0)
        for m in try socket.request(type: 22 /* RTM_GETADDR */, flags: 0x300, body: addr.bytes, what: "list addresses") where m.payload.count >= 8 {
            let index = Int32(bitPattern: m.payload.u32(4))
            let attrs = m.attributes(after: 8)
            guard let local = (attrs[2] ?? attrs[1]).flatMap({ IPv4Address(bytes: $0) }), m.payload[1] <= 32,
                  let i = links.firstIndex(where: { $0.index == index }) else { continue }
            links[i].addresses.append(IPv4CIDR(address: local, prefix: Int(m.payload[1])))
        }
        return links
    }

    public func link(named name: String) throws(NetlinkError) -> Link {
        guard let l = try links().first(where: { $0.name == name }) else { throw NetlinkError(operation: "find link \(name)", code: ENODEV) }
        return l
    }

    /// Brings a link up (or down), setting its MTU when given.
    public func setLink(_ link: Link, up: Bool, mtu: Int? = nil) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.u8(UInt8(AF_UNSPEC)); body.u8(0); body.u16(0)
        body.u32(UInt32(bitPattern: link.index)); body.u32(up ? 1 : 0); body.u32(1 /* IFF_UP */)
        if let mtu { body.attribute(4 /* IFLA_MTU */, u32: UInt32(mtu)) }
        _ = try socket.request(type: 16 /* RTM_NEWLINK */, flags: 0, body: body.bytes, what: "set \(link.name) \(up ? "up" : "down")")
    }

    /// Adds an IPv4 address with its broadcast; an address already there is not an error.
    public func addAddress(_ cidr: IPv4CIDR, to link: Link) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.u8(UInt8(AF_INET)); body.u8(UInt8(cidr.prefix)); body.u8(0); body.u8(0 /* RT_SCOPE_UNIVERSE */)
        body.u32(UInt32(bitPattern: link.index))
        body.attribute(2 /* IFA_LOCAL */, cidr.address.array)
        body.attribute(1 /* IFA_ADDRESS */, cidr.address.array)
        let host = cidr.prefix >= 32 ? UInt32(0) : (UInt32.max >> UInt32(cidr.prefix))
        let a = cidr.address.array
        let broadcast = (UInt32(a[0]) << 24 | UInt32(a[1]) << 16 | UInt32(a[2]) << 8 | UInt32(a[3])) | host
        body.attribute(4 /* IFA_BROADCAST */, [UInt8(broadcast >> 24), UInt8(broadcast >> 16 & 0xff), UInt8(broadcast >> 8 & 0xff), UInt8(broadcast & 0xff)])
        do {
            _ = try socket.request(type: 20 /* RTM_NEWADDR */, flags: 0x400 | 0x200 /* CREATE|EXCL */, body: body.bytes, what: "add \(cidr) to \(link.name)")
        } catch where error.code == EEXIST {}
    }

    /// Removes an IPv4 address (a DHCP lease that ended).
    public func removeAddress(_ cidr: IPv4CIDR, from link: Link) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.u8(UInt8(AF_INET)); body.u8(UInt8(cidr.prefix)); body.u8(0); body.u8(0)
        body.u32(UInt32(bitPattern: link.index))
        body.attribute(2, cidr.address.array)
        _ = try socket.request(type: 21 /* RTM_DELADDR */, flags: 0, body: body.bytes, what: "remove \(cidr) from \(link.name)")
    }

    /// Sets the default route through `gateway` on `link`, replacing one already there.
    public func setDefaultRoute(via gateway: IPv4Address, on link: Link) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.u8(UInt8(AF_INET)); body.u8(0 /* dst_len */); body.u8(0); body.u8(0)
        body.u8(254 /* RT_TABLE_MAIN */); body.u8(3 /* RTPROT_BOOT */); body.u8(0 /* RT_SCOPE_UNIVERSE */); body.u8(1 /* RTN_UNICAST */)
        body.u32(0)
        body.attribute(5 /* RTA_GATEWAY */, gateway.array)
        body.attribute(4 /* RTA_OIF */, u32: UInt32(bitPattern: link.index))
        _ = try socket.request(type: 24 /* RTM_NEWROUTE */, flags: 0x400 | 0x100 /* CREATE|REPLACE */, body: body.bytes, what: "route default via \(gateway) dev \(link.name)")
    }
}
