import Infoset

/// What a service holds to reach the rest of the node.
public struct ServiceContext: Sendable {
    public let kernel: Kernel
    public let path: String
    public let uri: String
    public let partners: [String: String]

    public var principal: Principal { .service(path) }

    /// The URI of a partner named in the manifest.
    public func partner(_ name: String) throws(Fault) -> String {
        guard let uri = partners[name] else {
            throw Fault(.receiver, "UnknownPartner", "\(path) has no partner named \(name) in its manifest entry")
        }
        return uri
    }

    /// Sends a verb to another service and returns the reply body; a fault is thrown. Made while
    /// handling `request`, the lines logged for the call carry that request's MessageID.
    public func call(_ verb: Verb, _ to: String, body: Element? = nil, buffers: [BufferRef] = [],
                     for request: Request? = nil) async throws(Fault) -> Element? {
        var m = Message(verb, to: to, body: body, buffers: buffers)
        m.from = path
        return try await kernel.send(m, as: principal, for: request?.context).result()
    }

    /// Sends a typed body and decodes a typed reply.
    public func call<Reply: Decodable>(_ verb: Verb, _ to: String, body: some Encodable, reply: Reply.Type,
                                       for request: Request? = nil) async throws(Fault) -> Reply {
        guard let e = try await call(verb, to, body: try infoset(body), for: request) else {
            throw Fault(.receiver, "EmptyReply", "\(to) answered \(verb.rawValue) with no body")
        }
        do { return try InfosetDecoder().decode(reply, from: e) } catch {
            throw Fault(.receiver, "UnexpectedReply", "\(to) answered \(verb.rawValue) with an unexpected body: \(error)")
        }
    }

    /// Subscribes this service to another; notifications arrive in `notify`.
    @discardableResult
    public func subscribe(to publisher: String) async throws(Fault) -> Element? {
        try await call(.subscribe, publisher)
    }

    /// A buffer of `count` bytes in the node's buffer pool, written in place by `fill`: the data
    /// planes send it as it is, with no copy. A `ResourceExhausted` fault when the pool is full.
    public func buffer(count: Int, fill: (UnsafeMutableRawBufferPointer) -> Void) throws(Fault) -> DataBuffer {
        do { return try DataBuffer(count: count, pool: kernel.pool, fill: fill) } catch { throw Fault.exhausted(error) }
    }

    /// Whether anything subscribes to this service now: a publisher whose notifications cost
    /// something to make can skip making them.
    public var hasSubscribers: Bool { kernel.uris.lookup(path)?.hasSubscribers ?? false }

    /// Notifies this service's subscribers of a change that did not arrive as a verb.
    public func publish(_ verb: Verb, body: Element?) {
        kernel.publish(Message(verb, to: "", body: body), from: path)
    }
}
