import Infoset
import Logging
import Synchronization

/// A service: an actor with a contract, reached at a URI, that answers verbs.
///
/// The actor is its own listener: its executor's queue is the service's port, so a local message
/// reaches `handle` by one actor hop, with no encoding and no copy. A thrown error ends that request
/// with a fault (a `Fault` as is, anything else as a Receiver fault); the service goes on serving.
public protocol Service: Actor {
    /// The contract URI this type implements, e.g. `urn:decos:examples:counter`.
    static var contract: String { get }
    /// The verbs it answers, with their bodies, for clients that generate code from a description
    /// (`GET /path?wsdl`). Empty, the default, says nothing: every verb is described with any body.
    static var operations: [ServiceOperation] { get }
    /// Builds the service from its manifest entry (initial state, partners, configuration).
    init(config: ServiceConfig) throws
    /// Called once after registration, before any message; the context reaches other services.
    func start(_ context: ServiceContext) async throws
    /// Answers one request. The result is the reply body (nil for an empty body).
    func handle(_ request: Request) async throws -> Element?
    /// Receives the notifications of subscriptions this service made.
    func notify(_ notification: Message) async
    /// Called when the service is dropped or the node stops.
    func stop() async
    /// How the kernel hands the service a request; a service does not implement it (the
    /// default below does). A requirement, and inlinable, so that the compiler makes a copy of the
    /// default for each service type with its `handle` inlined: one actor entry and one frame per
    /// local call, where a generic extension took two entries and two frames.
    func serve(_ request: Request, as registration: Registration, entered: (@Sendable () -> Void)?, logger: Logger) async -> Message
}

extension Service {
    /// Handles one request on the actor and makes its reply there: `entered` first (the request
    /// has its place on the actor), then `handle`, then the request queued as a notification to
    /// the subscribers of `registration` (when it changed state) before the actor is left, so notifications go out in the
    /// order the actor made the changes (for a handler that does not await between changing its
    /// state and returning), not in the order concurrent callers happen to resume.
    @inlinable @inline(__always)
    public func serve(_ request: Request, as registration: Registration, entered: (@Sendable () -> Void)?,
                      logger: Logger) async -> Message {
        entered?()
        do {
            let body = try await handle(request)
            if request.verb.changesState { registration.publish(request.message) }
            return request.reply(.success(body), registration, logger)
        } catch {
            return request.reply(.failure(error), registration, logger)
        }
    }

    public static var operations: [ServiceOperation] { [] }
    public func start(_ context: ServiceContext) async throws {}
    public func notify(_ notification: Message) async {}
    public func stop() async {}
}

/// Who sends a message; the security manager's rules are written in these terms.
public enum Principal: Sendable, Hashable, CustomStringConvertible {
    /// The kernel itself, at boot and shutdown.
    case system
    /// A local service, by path.
    case service(String)
    /// A gateway client holding the bearer token of this name.
    case token(String)
    /// A gateway client without a token.
    case anonymous
    /// Another node of the cluster, authenticated by the cluster key.
    case peer(String)

    public var description: String {
        switch self {
        case .system: "system"
        case .service(let p): "service:\(p)"
        case .token(let n): "token:\(n)"
        case .anonymous: "anonymous"
        case .peer(let n): "node:\(n)"
        }
    }
}

/// One incoming request as a service sees it.
public struct Request: Sendable {
    public let message: Message
    public let principal: Principal
    /// The service it went to and the MessageID that names it in the log (`logger`).
    public let context: RequestContext
    /// Buffers the handler sends back with its reply (`attach`), and writes to its durable state
    /// (`store`, `erase`).
    @usableFromInline let effects = RequestEffects()

    public init(message: Message, principal: Principal, context: RequestContext? = nil) {
        self.message = message
        self.principal = principal
        self.context = context ?? RequestContext(service: nil, messageID: message.messageID)
    }

    /// A logger whose lines name this request's service and MessageID (made when asked for: a
    /// handler that does not log pays nothing for it).
    public var logger: Logger { Logger(label: "decos").handling(context) }

    public var verb: Verb { message.verb }
    public var body: Element? { message.body }
    /// The request's buffers, by id (`message.buffers`).
    public func buffer(_ id: String) -> DataBuffer? { message.buffers.first { $0.id == id }?.buffer }

    /// Sends `buffer` back with the reply, beside its body: a client of the gateway gets it as an
    /// MTOM part (or inline in the envelope). Replies carry buffers to callers on this node and
    /// through the gateway; a caller on another node gets a fault instead (replies do not offer
    /// buffers on the data plane yet).
    public func attach(_ buffer: BufferRef) { effects.buffers.withLock { $0.append(buffer) } }

    /// The body as a typed value; a missing or mismatched body is a Sender fault naming what is wrong.
    public func decode<T: Decodable>(_ type: T.Type) throws(Fault) -> T {
        guard let body = message.body else {
            throw Fault.invalidBody("\(message.verb.rawValue) needs a <\(InfosetEncoder.rootName(of: T.self))> body")
        }
        return try decodeBody(type, body)
    }

    /// The body as a typed value, or nil when the message has no body.
    public func decodeIfPresent<T: Decodable>(_ type: T.Type) throws(Fault) -> T? {
        guard let body = message.body else { return nil }
        return try decodeBody(type, body)
    }

    private func decodeBody<T: Decodable>(_ type: T.Type, _ body: Element) throws(Fault) -> T {
        let expected = InfosetEncoder.rootName(of: T.self)
        guard body.name.local == expected else {
            throw Fault.invalidBody("\(message.verb.rawValue) expects a <\(expected)> body, got <\(body.name.local)>")
        }
        do {
            return try InfosetDecoder().decode(type, from: body)
        } catch {
            throw Fault.invalidBody("body does not match <\(expected)>: \(error)")
        }
    }
}

/// What a handler attached to its reply and wrote to its durable state; read by the kernel once
/// the handler returns. One box for both, made with the request: one allocation a request.
@usableFromInline
final class RequestEffects: Sendable {
    enum Write: Sendable {
        case put(String, Element)
        case erase(String)
    }
    @usableFromInline let buffers = Mutex<[BufferRef]>([])
    let writes = Mutex<[Write]>([])
    @usableFromInline init() {}
}

/// Encodes a typed value as a body element named after its type.
public func infoset<T: Encodable>(_ value: T) throws(Fault) -> Element {
    do {
        return try InfosetEncoder().encode(value)
    } catch {
        throw Fault(.receiver, "EncodingFailed", "could not encode \(T.self): \(error)")
    }
}

/// A service's state with its infoset cached: a Get returns the cached element until the state
/// changes, so reads cost no encoding.
@propertyWrapper
public struct ServiceState<Value: Codable & Sendable>: Sendable {
    private var value: Value
    private var cached: Element?

    public init(wrappedValue: Value) {
        self.value = wrappedValue
    }

    public var wrappedValue: Value {
        get { value }
        set { value = newValue; cached = nil }
    }

    public var projectedValue: ServiceState<Value> {
        get { self }
        set { self = newValue }
    }

    /// The state as an infoset, encoded at most once per change.
    public mutating func infoset() throws(Fault) -> Element {
        if let cached { return cached }
        let e = try ServiceKernel.infoset(value)
        cached = e
        return e
    }
}
