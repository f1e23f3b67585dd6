import Infoset
import ServiceKernel

/// `/os/dataplane`: the planes this node takes buffers on; per peer, what it offered and the plane
/// chosen for it; and per peer and plane, the bytes moved each way and the buffers offered, in
/// flight, received and failed. Empty on a node without a cluster.
public actor DataPlaneService: Service {
    public static let contract = "urn:decos:os:dataplane"

    /// `<DataPlanes><Offered>tcp</Offered><Peer><Node>b</Node><Plane>tcp</Plane><BytesSent>…</Peer>…
    /// <Choice><Node>b</Node><Offers>tcp</Offers><Chosen>tcp</Chosen></Choice>…</DataPlanes>`
    public struct DataPlanes: Codable, Sendable {
        public var offered: String
        public var peer: [PeerTraffic]
        public var choice: [PlaneChoice]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/dataplane") }
        let network = kernel?.remote as? NetworkManager
        return try infoset(DataPlanes(offered: network?.offeredPlanes.joined(separator: " ") ?? "", peer: network?.dataTraffic ?? [],
                                      choice: network?.planeChoices ?? []))
    }
}
