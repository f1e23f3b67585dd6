import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

/// One HTTP connection, on its event loop. Requests are collected here and answered by a task
/// that calls the kernel; NIO's server pipeline holds back a pipelined request until the answer
/// to the one before it is written, so replies keep their order.
final class Connection: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let gateway: Gateway
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    /// An MTOM request's body being read part by part.
    var multipart: MultipartReader?
    var refused = false
    /// A subscription stream this connection carries, ended when the client goes away.
    var stream: Task<Void, Never>?
    /// The request being answered, and its deadline: whichever of the reply and the deadline
    /// comes first is written, the other dropped.
    var inFlight: (id: UInt64, deadline: Scheduled<Void>)?
    var nextID: UInt64 = 0

    init(gateway: Gateway) { self.gateway = gateway }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            multipart = nil
            let binding = gateway.binding
            var limit = binding.maxRequestBytes
            let type = h.headers.first(name: "content-type") ?? ""
            if h.method == .POST, type.lowercased().hasPrefix("multipart/related"), !Gateway.queryItems(h.uri).contains(where: { $0.name == "form" }) {
                // MTOM: the parts are read as they come, the buffers into pool memory.
                guard let boundary = Gateway.parameter("boundary", of: type) else {
                    return refuse(context, Fault.malformed("multipart/related without a boundary parameter"), status: .badRequest)
                }
                do throws(Fault) {
                    multipart = try MultipartReader(boundary: boundary, start: Gateway.parameter("start", of: type),
                                                    limits: .init(rootBytes: binding.maxRequestBytes, bufferBytes: binding.maxBufferBytes),
                                                    pool: gateway.kernel.pool)
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
                    return refuse(context, error, status: error.subcode?.local == "TooLarge" ? .payloadTooLarge : Gateway.status(for: error))
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
            var parts: MultipartReader.Parts?
            if multipart != nil {
                do throws(Fault) { parts = try multipart?.finish() } catch { return refuse(context, error, status: .badRequest) }
                multipart = nil
            }
            let channel = context.channel
            let gateway = self.gateway
            let loop = context.eventLoop
            let connection = NIOLoopBound(self, eventLoop: loop)
            nextID += 1
            let id = nextID
            let timeout = gateway.binding.requestTimeout
            let deadline = loop.scheduleTask(in: .seconds(Int64(timeout))) {
                let fault = Fault.timeout("\(h.uri) did not answer within \(timeout) s")
                connection.value.finish(id, .reply(.fault(fault)), h, channel)
            }
            inFlight = (id, deadline)
            Task {
                let outcome = await gateway.respond(to: h, body: request, parts: parts)
                loop.execute { connection.value.finish(id, outcome, h, channel) }
            }
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
        inFlight = nil
        switch outcome {
        case .reply(let r): Connection.write(r, on: channel, keepAlive: h.isKeepAlive)
        case .stream(let m, let notifications): startStream(m, notifications, channel)
        case .events(let sources, let refused): startEvents(sources, refused: refused, channel)
        }
    }

    /// Answers at once with `fault` and closes: the rest of a body that is too large or malformed
    /// is never read.
    func refuse(_ context: ChannelHandlerContext, _ fault: Fault, status: HTTPResponseStatus) {
        refused = true
        multipart = nil
        Connection.write(.fault(fault, status: status), on: context.channel, keepAlive: false)
    }

    static func write(_ r: Gateway.Response, on channel: any Channel, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        headers.add(name: "Server", value: "decos")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        for (n, v) in r.extraHeaders { headers.add(name: n, value: v) }
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: r.status, headers: headers)), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: r.body))), promise: nil)
        let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { done.whenComplete { _ in channel.close(promise: nil) } }
    }

    func channelActive(context: ChannelHandlerContext) {
        if gateway.kernel.metrics.enabled {
            gateway.connectionsOpen.increment()
            gateway.connectionsOpened.increment()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if gateway.kernel.metrics.enabled { gateway.connectionsOpen.decrement() }
        stream?.cancel()
        inFlight?.deadline.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        gateway.logger.debug("gateway connection error: \(error)")
        context.close(promise: nil)
    }
}
