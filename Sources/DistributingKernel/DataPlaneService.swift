import Infoset
import ServiceKernel

/// `/os/dataplane`: per peer, the data plane its buffers move on, the bytes moved each way, the
/// buffers offered, in flight and failed. Empty on a node without a cluster.
public actor DataPlaneService: Service {
    public static let contract = "urn:decos:os:dataplane"

    /// `<DataPlanes><Peer><Node>b</Node><Plane>tcp</Plane><BytesSent>…</Peer>…</DataPlanes>`
    public struct DataPlanes: Codable, Sendable {
        public var peer: [PeerTraffic]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/dataplane") }
        let network = kernel?.remote as? NetworkManager
        return try infoset(DataPlanes(peer: network?.dataTraffic ?? []))
    }
}
