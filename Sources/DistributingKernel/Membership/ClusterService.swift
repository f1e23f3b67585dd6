import Infoset
import ServiceKernel

/// `/os/cluster`: the cluster's members as this node sees them, itself first, with their status,
/// address and incarnation. Subscribers are told of each change as the failure detector makes it
/// (an Update whose body is the member), so a console shows joins, suspicions and deaths live.
/// A node without a cluster lists itself alone.
public actor ClusterService: Service {
    public static let contract = "urn:decos:os:cluster"
    public static let operations = [ServiceOperation(.get, returns: ClusterView.self)]

    public struct ClusterView: Codable, Sendable {
        public var node: String
        public var member: [MemberEntry]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "cluster service not started") }
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/cluster") }
        let members = (kernel.remote as? any NetworkFacts)?.members.map(MemberEntry.init)
            ?? [MemberEntry(name: kernel.node, address: "", status: "alive", incarnation: 0)]
        return try infoset(ClusterView(node: kernel.node, member: members))
    }
}

/// One member in `/os/cluster`.
public struct MemberEntry: Codable, Sendable, Equatable {
    public var name: String
    /// Where its cluster port is (empty for a node without a cluster).
    public var address: String
    /// alive, suspect, dead or left.
    public var status: String
    public var incarnation: UInt64

    public init(name: String, address: String, status: String, incarnation: UInt64) {
        self.name = name
        self.address = address
        self.status = status
        self.incarnation = incarnation
    }

    init(_ m: Membership.Member) {
        self.init(name: m.name, address: m.address, status: "\(m.status)", incarnation: m.incarnation)
    }
}
