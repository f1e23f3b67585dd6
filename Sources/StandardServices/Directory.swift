import Infoset
import ServiceKernel

/// `/directory`: the node's mapping table. Get lists every service; Query finds by contract or
/// path; subscribers are told of each registration (Insert) and removal (Delete) as it happens.
public actor Directory: Service {
    public static let contract = "urn:decos:directory"
    public static let operations = [ServiceOperation(.get, returns: DirectoryList.self), ServiceOperation(.query, takes: DirectoryQuery.self, returns: DirectoryList.self)]

    public struct DirectoryList: Codable, Sendable {
        public var entry: [DirectoryEntry]
    }

    /// Filters; each given one must match. `path` may use `*`.
    public struct DirectoryQuery: Codable, Sendable {
        public var contract: String?
        public var path: String?
    }

    private var kernel: Kernel?
    private var observer: UInt64?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws {
        kernel = context.kernel
        // Published as the table changes, so a subscriber sees exactly the changes after it subscribed.
        observer = context.kernel.uris.observe { change in
            switch change {
            case .registered(let e): context.publish(.insert, body: try? infoset(e))
            case .unregistered(let e): context.publish(.delete, body: try? infoset(e))
            }
        }
    }

    public func stop() {
        if let observer { kernel?.uris.stopObserving(observer) }
    }

    public func handle(_ request: Request) throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "directory not started") }
        switch request.verb {
        case .get:
            return try infoset(DirectoryList(entry: kernel.clusterEntries))
        case .query:
            let q = try request.decode(DirectoryQuery.self)
            let found = kernel.clusterEntries.filter { e in
                (q.contract.map { $0 == e.contract } ?? true) && (q.path.map { pattern(e.path, $0) } ?? true)
            }
            return try infoset(DirectoryList(entry: found))
        default:
            throw Fault.actionNotSupported(request.verb, "/directory")
        }
    }

    private func pattern(_ path: String, _ p: String) -> Bool {
        p.hasSuffix("*") ? path.hasPrefix(p.dropLast()) : path == p
    }
}
