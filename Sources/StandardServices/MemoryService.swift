import Infoset
import ServiceKernel

/// `/os/memory`: the node's buffer pools, one per NUMA node they place pages on: the limit, the
/// bytes mapped, in use (and by how many buffers), free for reuse, and requests refused.
public actor MemoryService: Service {
    public static let contract = "urn:decos:os:memory"

    /// `<Memory><Pool><Node>0</Node><Limit>…</Limit>…</Pool></Memory>`
    public struct Memory: Codable, Sendable {
        public var pool: [BufferPool.Usage]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/memory") }
        return try infoset(Memory(pool: kernel.map { [$0.pool.usage] } ?? []))
    }
}
