import Infoset
import ServiceKernel

/// `/constructor`: creates and drops services at run time.
///
/// Create `<Create><Contract>urn:…</Contract><Name>/x</Name><State>…</State><Durable>true</Durable></Create>` →
/// `<CreateResponse><Uri>decos://node/x</Uri></CreateResponse>`; Drop `<Drop><Service>/x</Service></Drop>`.
public actor Constructor: Service {
    public static let contract = "urn:decos:constructor"
    public static let operations = [ServiceOperation(.create, takes: Create.self, returns: CreateResponse.self), ServiceOperation(.drop, takes: .of(Drop.self))]

    public struct Create: Codable, Sendable {
        public var contract: String
        public var name: String?
        public var state: Element?
        public var partner: [PartnerEntry]
        /// Whether it keeps its state on the node's storage, and is made again at the node's next start.
        public var durable: Bool?
    }

    public struct CreateResponse: Codable, Sendable {
        public var uri: String
        public var path: String
    }

    public struct Drop: Codable, Sendable {
        public var service: String
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) async throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "constructor not started") }
        switch request.verb {
        case .create:
            let c = try request.decode(Create.self)
            var config = ServiceConfig(contract: c.contract, name: c.name, partners: Dictionary(c.partner.map { ($0.name, $0.uri) }) { a, _ in a },
                                       state: c.state)
            config.durable = c.durable ?? false
            let reg = try await kernel.create(config, for: request)
            return try infoset(CreateResponse(uri: reg.uri, path: reg.path))
        case .drop:
            let d = try request.decode(Drop.self)
            guard let path = kernel.uris.localPath(d.service), let target = kernel.uris.lookup(path) else {
                throw Fault.unknownService(d.service)
            }
            guard !target.essential else {
                throw Fault(.sender, "Essential", "\(target.uri) is a system service and cannot be dropped")
            }
            if let denial = kernel.security.authorize(request.principal, .drop, path: path) { throw denial }
            try await kernel.drop(path, for: request)
            return nil
        default:
            throw Fault.actionNotSupported(request.verb, "/constructor")
        }
    }
}
