/// RDMA devices over RDMA netlink (NETLINK_RDMA, the "nldev" client): what `rdma link` does.
public final class RDMANetlink {
    let socket: NetlinkSocket
    // RDMA_NL_GET_TYPE(RDMA_NL_NLDEV = 5, op) and the nldev attribute numbers, from <rdma/rdma_netlink.h>.
    static func type(_ op: UInt16) -> UInt16 { 5 << 10 + op }
    static let get: UInt16 = 1, newLink: UInt16 = 3
    static let devIndex: UInt16 = 1, devName: UInt16 = 2, ndevName: UInt16 = 51, linkType: UInt16 = 65

    public init() throws(NetlinkError) { socket = try NetlinkSocket(protocol: 20 /* NETLINK_RDMA */) }

    /// The RDMA devices the kernel has (`rxe0`, `mlx5_0`).
    public func devices() throws(NetlinkError) -> [String] {
        try socket.request(type: Self.type(Self.get), flags: 0x300 /* NLM_F_DUMP */, body: [], what: "list RDMA devices")
            .compactMap { $0.attributes(after: 0)[Self.devName]?.cString }
    }

    /// Creates a Soft-RoCE device `name` over the network device `netdev` (`rdma link add NAME type rxe netdev NETDEV`).
    public func addSoftRoCE(_ name: String, over netdev: String) throws(NetlinkError) {
        var body = NetlinkBuilder()
        body.attribute(Self.devName, string: name)
        body.attribute(Self.linkType, string: "rxe")
        body.attribute(Self.ndevName, string: netdev)
        _ = try socket.request(type: Self.type(Self.newLink), flags: 0, body: body.bytes, what: "rdma link add \(name) type rxe netdev \(netdev)")
    }
}
