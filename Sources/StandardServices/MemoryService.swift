import Infoset
import ServiceKernel

/// `/os/memory`: the node's buffer pools, one per NUMA node they place pages on: the interfaces
/// whose buffers land there, the limit, the bytes mapped, in use (and by how many buffers), free
/// for reuse, requests refused, and bytes found placed on the node (or blocks that were not).
public actor MemoryService: Service {
    public static let contract = "urn:decos:os:memory"
    public static let operations = [ServiceOperation(.get, returns: Memory.self)]

    /// `<Memory><Pool><Node>0</Node><Limit>…</Limit>…</Pool></Memory>`
    public struct Memory: Codable, Sendable {
        public var pool: [BufferPool.Usage]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/memory") }
        return try infoset(Memory(pool: kernel?.pools.usage ?? []))
    }
}
