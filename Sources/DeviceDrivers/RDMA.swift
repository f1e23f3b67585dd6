/// RDMA devices over RDMA netlink (NETLINK_RDMA, the "nldev" client): what `rdma link` does.
public final class RDMANetlink {
    let socket: NetlinkSocket
    // RDMA_NL_GET_TYPE(RDMA_NL_NLDEV = 5, op) and the nldev attribute numbers, from <rdma/rdma_netlink.h>.
    static func type(_ op: UInt16) -> UInt16 { 5 << 10 + op }
    static let newLink: UInt16 = 3
    static let devName: UInt16 = 2, ndevName: UInt16 = 51, linkType: UInt16 = 65

    public init() throws(NetlinkError) { socket = try NetlinkSocket(protocol: 20 /* NETLINK_RDMA */) }

    /// Creates a Soft-RoCE device `name` over the network device `netdev` (`rdma link add NAME type rxe netdev NETDEV`).
    public func addSoftRoCE(_ name: String, over netdev: String) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.attribute(Self.devName, string: name)
        body.attribute(Self.linkType, string: "rxe")
        body.attribute(Self.ndevName, string: netdev)
        _ = try socket.request(type: Self.type(Self.newLink), flags: 0, body: body.bytes, what: "rdma link add \(name) type rxe netdev \(netdev)")
    }
}
