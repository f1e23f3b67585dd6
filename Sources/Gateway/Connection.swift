import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

/// One HTTP connection, on its event loop. Requests are collected here and answered by a task
/// that calls the kernel; NIO's server pipeline holds back a pipelined request until the answer
/// to the one before it is written, so replies keep their order. A request is refused on its head
/// — a foreign `Host` or origin (RequestGuard.swift), an unknown token, a body over the limits —
/// before its body is read, and an MTOM request's envelope is checked before its buffers are.
final class Connection: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let gateway: Gateway
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    /// An MTOM request's body being read part by part.
    var multipart: MultipartReader?
    /// The request's principal, from its `Authorization` header.
    var principal = Principal.anonymous
    /// An MTOM request's envelope, checked as soon as it was read.
    var envelope: MTOM.Envelope?
    var refused = false
    /// A refused request's answer, written: the connection ends once it is, and the request has
    /// all come (or the linger is over).
    var refusal: EventLoopFuture<Void>?
    /// A subscription stream this connection carries, ended when the client goes away.
    var stream: Task<Void, Never>?
    /// The request being answered, the task answering it, and its deadline: whichever of the
    /// reply and the deadline comes first is written, the other dropped. The task is cancelled
    /// when the client goes away.
    var inFlight: (id: UInt64, task: Task<Void, Never>, deadline: Scheduled<Void>)?
    var nextID: UInt64 = 0
    /// The client's address, once its connection is admitted (and counted).
    var client: String?
    /// Why the connection was not admitted: a cap was reached.
    var overCap: String?
    /// When a request's head must have arrived by (from the connection's start, or the last
    /// answer), so a client that trickles a header byte at a time holds no connection for long;
    /// nil while a request is read or answered.
    var headDue: NIODeadline?
    /// The one timer that enforces `headDue`, and when it fires. It is not moved for each request (a
    /// timer scheduled and cancelled per request cost a keep-alive client 16-33% of its requests per
    /// second): when it fires before the head is due, it is armed again for the rest.
    var headTimer: (task: Scheduled<Void>, at: NIODeadline)?
    /// Seconds an over-cap connection has to send the head its 503 answers.
    static let overCapGrace: Int64 = 2
    /// Seconds a refused client has to finish sending the request it was refused on (see `refuse`).
    static let lingerSeconds: Int64 = 2

    /// Closes the connection unless a request's head arrives within `seconds`.
    func awaitHead(on channel: any Channel, within seconds: Int64) {
        let due = NIODeadline.now() + .seconds(seconds)
        headDue = due
        if let timer = headTimer, timer.at <= due { return }
        headTimer?.task.cancel()
        armHeadTimer(on: channel, at: due)
    }

    private func armHeadTimer(on channel: any Channel, at due: NIODeadline) {
        let connection = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let task = channel.eventLoop.scheduleTask(deadline: due) {
            let c = connection.value
            c.headTimer = nil
            guard let due = c.headDue else { return }  // a head came; the next answer arms it again
            if due <= .now() { channel.close(promise: nil) } else { c.armHeadTimer(on: channel, at: due) }
        }
        headTimer = (task, due)
    }

    init(gateway: Gateway) { self.gateway = gateway }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else {
            // The rest of a refused request is dropped; once it has all come and the answer is
            // written, nothing is left to say.
            if case .end = unwrapInboundIn(data) {
                let channel = context.channel
                (refusal ?? channel.eventLoop.makeSucceededVoidFuture()).whenComplete { _ in channel.close(promise: nil) }
            }
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let h):
            headDue = nil
            head = h
            body.clear()
            multipart = nil
            envelope = nil
            if let overCap { return refuse(context, Admission.busy(overCap)) }
            // A stopping node takes no new request: turned away before its body is read.
            if gateway.isStopping { return refuse(context, gateway.stoppingResponse) }
            if let (fault, status) = gateway.guardRefusal(h) { return refuse(context, fault, status: status) }
            switch gateway.principal(h) {
            case .success(let p): principal = p
            case .failure(let f): return refuse(context, f, status: .unauthorized)
            }
            let binding = gateway.binding
            var limit = binding.maxRequestBytes
            let type = h.headers.first(name: "content-type") ?? ""
            if h.method == .POST, type.lowercased().hasPrefix("multipart/related"), !Gateway.queryItems(h.uri).contains(where: { $0.name == "form" }) {
                // MTOM: the parts are read as they come, the buffers into pool memory.
                guard let boundary = Gateway.parameter("boundary", of: type) else {
                    return refuse(context, Fault.malformed("multipart/related without a boundary parameter"), status: .badRequest)
                }
                // The envelope, and the client's right to send it there, before any buffer is taken.
                let (gateway, principal, path) = (gateway, principal, Gateway.destination(String(h.uri.prefix { $0 != "?" && $0 != "#" })))
                // Unowned: the reader, and so this closure, belongs to this connection and is
                // called only from its channelRead, on its event loop.
                let admit = { [unowned self] (root: MultipartReader.Part) throws(Fault) in
                    var e = try MTOM.envelope(root, action: Gateway.parameter("action", of: type))
                    Gateway.address(&e.message, path: path)
                    if let denial = gateway.refusal(e.message, as: principal) { throw denial }
                    self.envelope = e
                }
                do throws(Fault) {
                    multipart = try MultipartReader(boundary: boundary, start: Gateway.parameter("start", of: type),
                                                    limits: .init(rootBytes: binding.maxRequestBytes, bufferBytes: binding.maxBufferBytes),
                                                    pool: gateway.kernel.pool, admit: admit)
                } catch {
                    return refuse(context, error, status: .badRequest)
                }
                // The envelope, the buffers, and room for the parts' own headers and delimiters.
                limit = binding.maxRequestBytes + binding.maxBufferBytes + 64 * 1024
            }
            if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > limit {
                refuse(context, Fault(.sender, "TooLarge", "request body exceeds the gateway's limit of \(limit) bytes"), status: .payloadTooLarge)
            } else if h.headers.first(name: "expect")?.lowercased() == "100-continue" {
                // The client waits for this before a large body (curl does, up to a second).
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))), promise: nil)
            }
        case .body(var chunk):
            if multipart != nil {
                // Fed in place; a refusal drops the reader, and the pool has its blocks back,
                // before the answer is written.
                do throws(Fault) { try multipart?.feed(chunk) } catch {
                    return refuse(context, error, status: Connection.status(for: error))
                }
            } else if body.readableBytes + chunk.readableBytes > gateway.binding.maxRequestBytes {
                refuse(context, Fault(.sender, "TooLarge", "request body exceeds the gateway's limit of \(gateway.binding.maxRequestBytes) bytes"),
                       status: .payloadTooLarge)
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            guard let h = head else { return }
            head = nil
            let request = body
            body = ByteBuffer()
            var mtom: Message?
            if multipart != nil {
                do throws(Fault) {
                    let parts = try multipart!.finish()
                    guard let envelope else { throw Fault.malformed("the MTOM request has no envelope") }
                    mtom = try MTOM.message(envelope, parts: parts.others)
                } catch {
                    refused = true
                    multipart = nil
                    Connection.write(.fault(error, status: .badRequest), on: context.channel, keepAlive: false)
                    return
                }
                multipart = nil
                envelope = nil
            }
            let channel = context.channel
            let gateway = self.gateway
            // Counted now, or turned away if the stop began while its body came.
            guard gateway.owed.begin() else {
                refused = true
                refusal = Connection.write(gateway.stoppingResponse, on: channel, keepAlive: false)
                return
            }
            if let busy = gateway.admission.take(.request, from: client ?? "?") {
                gateway.owed.end()
                awaitHead(on: channel, within: Int64(gateway.binding.requestTimeout))
                Connection.write(Admission.busy(busy), on: channel, keepAlive: h.isKeepAlive)
                return
            }
            let loop = context.eventLoop
            let connection = NIOLoopBound(self, eventLoop: loop)
            nextID += 1
            let id = nextID
            let timeout = gateway.binding.requestTimeout
            let principal = self.principal
            let client = self.client ?? "?"
            let task = Task {
                defer { gateway.admission.release(.request, from: client) }
                let outcome = await gateway.respond(to: h, body: request, mtom: mtom, as: principal)
                loop.execute { connection.value.finish(id, outcome, h, channel) }
            }
            let deadline = loop.scheduleTask(in: .seconds(Int64(timeout))) {
                let fault = Fault.timeout("\(h.uri) did not answer within \(timeout) s")
                connection.value.finish(id, .reply(.fault(fault)), h, channel)
            }
            inFlight = (id, task, deadline)
        }
    }

    /// A refusal's HTTP status: 413 for what is too large, 401/403 for what is not allowed.
    static func status(for f: Fault) -> HTTPResponseStatus {
        switch f.subcode?.local {
        case "TooLarge": .payloadTooLarge
        case "Unauthorized": .unauthorized
        case "Denied": .forbidden
        default: Gateway.status(for: f)
        }
    }

    /// A connection that has sent nothing for the idle timeout is closed (a slow or vanished
    /// client) — unless the node owes it something: a request still being answered (the request
    /// timeout bounds that) or a subscription stream it is reading.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is IdleStateHandler.IdleStateEvent else { return context.fireUserInboundEventTriggered(event) }
        if inFlight == nil && stream == nil { context.close(promise: nil) }
    }

    /// Writes the answer to request `id` unless it has been answered already (by its deadline).
    func finish(_ id: UInt64, _ outcome: Gateway.Outcome, _ h: HTTPRequestHead, _ channel: any Channel) {
        guard let current = inFlight, current.id == id else { return }
        current.deadline.cancel()
        // Answered by its deadline: the work goes no further.
        current.task.cancel()
        inFlight = nil
        switch outcome {
        case .reply(let r):
            // The next request's head has the same time to arrive as the first's. Armed before
            // the write: writing the answer hands NIO's pipeline the next pipelined request at
            // once, and its head must find the deadline set, to clear it.
            if h.isKeepAlive { awaitHead(on: channel, within: Int64(gateway.binding.requestTimeout)) }
            let owed = gateway.owed
            Connection.write(r, on: channel, keepAlive: h.isKeepAlive).whenComplete { _ in owed.end() }
        case .stream, .events:
            gateway.owed.end()  // answered: what follows is a stream, not owed
            let client = self.client ?? "?"
            if let busy = gateway.admission.take(.stream, from: client) {
                Connection.write(Admission.busy(busy), on: channel, keepAlive: false)
                return
            }
            let admission = gateway.admission
            channel.closeFuture.whenComplete { _ in admission.release(.stream, from: client) }
            if case .stream(let m, let notifications) = outcome { startStream(m, notifications, channel) }
            if case .events(let sources, let refused) = outcome { startEvents(sources, refused: refused, channel) }
        }
    }

    /// Answers at once with `fault` and ends the connection: the rest of a body that is too large
    /// or not allowed is never taken in.
    func refuse(_ context: ChannelHandlerContext, _ fault: Fault, status: HTTPResponseStatus) {
        refuse(context, .fault(fault, status: status))
    }

    /// Answers a request before its body has all come, and ends the connection as nginx's lingering
    /// close does: the answer, then the write side closed, while what the client still sends is
    /// read and dropped until its request ends or `lingerSeconds` pass. Closed at once, a client
    /// still sending its body would get a reset for its next write, and often lose the answer.
    func refuse(_ context: ChannelHandlerContext, _ answer: Gateway.Response) {
        refused = true
        multipart = nil
        body = ByteBuffer()
        let channel = context.channel
        refusal = Connection.write(answer, on: channel, keepAlive: false, linger: true)
        awaitHead(on: channel, within: Connection.lingerSeconds)
    }

    /// Writes an answer; one that is not kept alive ends the connection (only its write side when
    /// `linger`, see `refuse`). Returns the write of its last part.
    @discardableResult
    static func write(_ r: Gateway.Response, on channel: any Channel, keepAlive: Bool, linger: Bool = false) -> EventLoopFuture<Void> {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        headers.add(name: "Server", value: "decos")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        for (n, v) in r.extraHeaders { headers.add(name: n, value: v) }
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: r.status, headers: headers)), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: r.body))), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        guard !keepAlive else { return done }
        done.whenComplete { _ in
            guard linger else { return channel.close(promise: nil) }
            // Should the write side not close alone (an error, or a channel that cannot), both do.
            channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        }
        return done
    }

    func channelActive(context: ChannelHandlerContext) {
        let address = context.remoteAddress?.ipAddress ?? "?"
        // Past a cap the connection is answered 503 when its request's head arrives (a response
        // cannot go ahead of a request through NIO's HTTP pipeline), or closed if it has none
        // within seconds; it holds no slot.
        overCap = gateway.admission.openConnection(from: address)
        guard overCap == nil else {
            awaitHead(on: context.channel, within: Connection.overCapGrace)
            return context.fireChannelActive()
        }
        awaitHead(on: context.channel, within: Int64(gateway.binding.requestTimeout))
        client = address
        if gateway.kernel.metrics.enabled {
            gateway.connectionsOpen.increment()
            gateway.connectionsOpened.increment()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        headTimer?.task.cancel()
        headTimer = nil
        guard let client else { return context.fireChannelInactive() }
        gateway.admission.closeConnection(from: client)
        if gateway.kernel.metrics.enabled { gateway.connectionsOpen.decrement() }
        stream?.cancel()
        inFlight?.deadline.cancel()
        // The client is gone: nobody will read the answer.
        inFlight?.task.cancel()
        if inFlight != nil { gateway.owed.end() }
        inFlight = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        gateway.logger.debug("gateway connection error: \(error)")
        context.close(promise: nil)
    }
}
