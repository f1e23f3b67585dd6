import CoreMetrics
import Infoset
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceKernel
import Synchronization

/// The HTTP binding: SOAP 1.2 over HTTP/1.1 (POST an envelope to a service's path), GET a path for
/// its state as XML, GET `/` for the directory as a page, and `Subscribe` as a stream of envelopes.
public final class Gateway: Sendable {
    public let kernel: Kernel
    public let binding: GatewayBinding
    let logger: Logger
    /// What clients hold of the node now: connections, requests, streams (Admission.swift).
    let admission: Admission
    /// Closed once the gateway is asked to stop: a request that arrives after it, on a connection
    /// kept alive, is turned away (`stoppingResponse`) rather than taken, so what is owed drains
    /// even while clients keep calling.
    let owed = AnswersOwed()
    public var isStopping: Bool { owed.isClosed }
    /// Requests taken and not yet answered on the wire.
    public var answersOwed: Int { owed.count }

    /// Connections open now, and opened since the node started.
    let connectionsOpen: Meter
    let connectionsOpened: CoreMetrics.Counter

    public init(kernel: Kernel, binding: GatewayBinding, logger: Logger) {
        self.kernel = kernel
        self.binding = binding
        self.logger = logger
        admission = Admission(binding: binding)
        connectionsOpen = kernel.metrics.gauge("decos_gateway_connections")
        connectionsOpened = kernel.metrics.counter("decos_gateway_connections_total")
    }

    private let server = Mutex<(any Channel)?>(nil)

    /// Binds the listening socket and returns the address it got (the port, if 0 was asked).
    public func bind() async throws -> SocketAddress {
        let idle = TimeAmount.seconds(Int64(binding.idleTimeout))
        let tls = try binding.certificate.map { try TLS.serverContext(certificate: $0, key: binding.key ?? "") }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let tls { try ops.addHandler(NIOSSLServerHandler(context: tls)) }
                    // Its events reach `Connection`, which closes only a connection with nothing asked of the node.
                    try ops.addHandler(IdleStateHandler(readTimeout: idle), name: "idle")
                    try ops.configureHTTPServerPipeline(withErrorHandling: true)
                    try ops.addHandler(Connection(gateway: self))
                }
            }
            .bind(host: binding.host, port: binding.port).get()
        server.withLock { $0 = channel }
        guard let address = channel.localAddress else { throw HTTPClient.Failure(description: "gateway socket has no address") }
        return address
    }

    /// Serves connections on the bound socket until the task is cancelled; then takes no new
    /// connection, and returns once every request already taken is answered on the wire (at
    /// most `drainBound` later), so a stopping node still answers the calls it took.
    public func serve() async throws {
        guard let server = server.withLock({ $0 }) else { throw HTTPClient.Failure(description: "gateway not bound") }
        try await withTaskCancellationHandler {
            try await server.closeFuture.get()
        } onCancel: {
            owed.close()
            server.close(promise: nil)
        }
        await owed.drained(within: Self.drainBound)
    }

    /// The longest a stopping gateway waits for its answers.
    static let drainBound = Duration.seconds(2)

    /// What a request that arrives once the node is stopping gets: 503, try again (elsewhere) in
    /// a second (`Response.fault`); its connection is closed after it.
    var stoppingResponse: Response { .fault(.stopping(kernel.node)) }

    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]
        var extraHeaders: [(String, String)] = []

        static func fault(_ f: Fault, status: HTTPResponseStatus? = nil) -> Response {
            var m = Message(.get, to: "", kind: .fault)
            m.fault = f
            var r = Response(status: status ?? Gateway.status(for: f), contentType: SOAP.contentType, body: SOAP.encode(m))
            // This node stopping, or the one a call went on to: the client may try again shortly.
            if f.subcode?.local == "Stopping" { r.extraHeaders.append(("Retry-After", "1")) }
            return r
        }
    }

    /// The SOAP 1.2 HTTP binding: Sender faults are the client's error, the rest the server's.
    static func status(for f: Fault) -> HTTPResponseStatus {
        if f.subcode?.local == "Stopping" { return .serviceUnavailable }
        return f.code == .sender ? .badRequest : .internalServerError
    }

    // MARK: requests

    func principal(_ h: HTTPRequestHead) -> Result<Principal, Fault> {
        guard let auth = h.headers.first(name: "authorization") else { return .success(.anonymous) }
        guard auth.lowercased().hasPrefix("bearer ") else {
            return .failure(Fault(.sender, "Unauthorized", "only Bearer tokens are accepted in Authorization"))
        }
        guard let p = kernel.security.principal(forToken: String(auth.dropFirst(7)).trimmingXMLSpace()) else {
            return .failure(Fault(.sender, "Unauthorized", "unknown bearer token"))
        }
        return .success(p)
    }

    enum Outcome {
        case reply(Response)
        /// A Subscribe from an HTTP client: the connection becomes a stream of notifications.
        case stream(Message, AsyncStream<Message>)
        /// The console's stream of which services changed (EventStream.swift).
        case events([(path: String, stream: AsyncStream<Message>)], refused: [(path: String, reason: String)])
    }

    /// `mtom`: an MTOM request, its envelope and buffers read by the connection as they came
    /// (Multipart.swift); `body` is empty then.
    func respond(to h: HTTPRequestHead, body: ByteBuffer, mtom: Message? = nil, as principal: Principal) async -> Outcome {
        let link = String(h.uri.prefix { $0 != "?" && $0 != "#" })
        let path = Gateway.destination(link)
        switch Route(h.method, path: path, query: Gateway.queryItems(h.uri)) {
        case .events: return await eventSources(h, as: principal)
        case .nodesTable(let pages): return .reply(fragment(nodesTable(await nodeRows(principal), pages: pages)))
        case .console(let node): return .reply(await consolePage(principal, node: node))
        case .metrics: return .reply(metricsPage(principal))
        case .wsdl: return .reply(await wsdlPage(h, path, as: principal))
        case .view: return .reply(await viewPage(path, link, as: principal))
        case .fragment: return .reply(fragment(stateFragment(await kernel.send(Message(.get, to: path), as: principal), path: link)))
        case .state: return .reply(await statePage(path, as: principal))
        case .form: return .reply(await formReply(h, path, body: body, as: principal))
        case .envelope: return await envelopeReply(h, path, body: body, mtom: mtom, as: principal)
        case .notAllowed:
            return .reply(Response(status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                                   body: Array("use POST (SOAP 1.2) or GET\n".utf8), extraHeaders: [("Allow", "GET, HEAD, POST")]))
        }
    }

    /// A service's state as XML: what its Get answers.
    private func statePage(_ path: String, as principal: Principal) async -> Response {
        let reply = await kernel.send(Message(.get, to: path), as: principal)
        if let f = reply.fault {
            if f.subcode?.local == "UnknownService" { return .fault(f, status: .notFound) }
            return .fault(f)
        }
        return Response(status: .ok, contentType: "application/xml; charset=utf-8",
                        body: reply.body.map { XMLWriter.bytes($0, declaration: true) } ?? [])
    }

    /// A SOAP envelope (or MTOM) POSTed to a service: its reply, or a subscription's stream.
    private func envelopeReply(_ h: HTTPRequestHead, _ path: String, body: ByteBuffer, mtom: Message?, as principal: Principal) async -> Outcome {
        let rawType = h.headers.first(name: "content-type") ?? ""
        let type = rawType.lowercased()
        guard mtom != nil || type.hasPrefix("application/soap+xml") else {
            return .reply(.fault(Fault(.sender, "UnsupportedMediaType",
                                       "POST a SOAP 1.2 envelope as application/soap+xml, or with buffers as MTOM (multipart/related) (got \(type.isEmpty ? "no Content-Type" : type))"),
                                 status: .unsupportedMediaType))
        }
        var request: Message
        if let mtom {
            request = mtom
        } else {
            do throws(Fault) { request = try SOAP.decode(Array(buffer: body), action: Gateway.parameter("action", of: rawType)) } catch {
                return .reply(.fault(error))
            }
            Gateway.address(&request, path: path)
        }
        guard request.kind == .request else { return .reply(.fault(.malformed("the gateway accepts requests, not \(request.kind)s"))) }
        if request.verb == .subscribe, request.from == nil, request.replyTo == nil {
            do throws(Fault) {
                return .stream(request, try await kernel.subscribe(anywhere: path, as: principal))
            } catch {
                return .reply(.fault(error))
            }
        }
        var reply = await kernel.send(request, as: principal)
        reply.to = request.replyTo ?? request.from ?? ""
        let status = reply.fault.map(Gateway.status) ?? .ok
        // Buffers go back as MTOM parts to a client that sent MTOM or accepts it, else inline.
        if !reply.buffers.isEmpty, mtom != nil || (h.headers.first(name: "accept")?.lowercased().contains("multipart/related") ?? false) {
            return .reply(MTOM.response(reply, status: status))
        }
        return .reply(Response(status: status, contentType: SOAP.contentType, body: SOAP.encode(reply)))
    }

    /// An envelope addressed to another node's URI goes there; otherwise the URL's path names the service.
    static func address(_ m: inout Message, path: String) {
        if !m.to.hasPrefix("decos://") || path != "/" { m.to = path }
    }

    /// Why `principal` may not send `m` (to this node's service or, through it, another's); nil if it may.
    func refusal(_ m: Message, as principal: Principal) -> Fault? {
        kernel.uris.localPath(m.to) == nil ? kernel.security.authorize(principal, m.verb, path: m.to) : kernel.refusal(m, as: principal)
    }

    /// An HTML fragment for the console's script to put in place.
    func fragment(_ html: String) -> Response {
        Response(status: .ok, contentType: "text/html; charset=utf-8", body: Array(html.utf8), extraHeaders: [("Cache-Control", "no-store")])
    }

    /// The query of a request target, without its fragment: `wsdl` of `/counter?wsdl`.
    static func query(_ uri: String) -> Substring {
        guard let q = uri.firstIndex(of: "?") else { return "" }
        return uri[uri.index(after: q)...].prefix { $0 != "#" }
    }

    /// A media type's parameter, unquoted: `action` of `application/soap+xml; action="urn:…"`.
    static func parameter(_ name: String, of mediaType: String) -> String? {
        for p in mediaType.split(separator: ";").dropFirst() {
            let pair = p.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, String(pair[0]).trimmingXMLSpace().lowercased() == name else { continue }
            let value = String(pair[1]).trimmingXMLSpace()
            return value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") ? String(value.dropFirst().dropLast()) : String(value)
        }
        return nil
    }

    /// `/@b/counter` names `decos://b/counter`: the gateway of any node reaches every node's services.
    static func destination(_ path: String) -> String {
        guard path.hasPrefix("/@") else { return path }
        let rest = path.dropFirst(2)
        let node = rest.prefix { $0 != "/" }
        return "decos://\(node)\(rest.dropFirst(node.count))"
    }

    // MARK: pages

    /// The node's metrics for Prometheus, to whoever may read the node's own state.
    func metricsPage(_ principal: Principal) -> Response {
        guard kernel.metrics.enabled else {
            return .fault(Fault(.sender, "NotServed", "this node's metrics are off (metrics=\"off\" on <Gateway> in its manifest)"), status: .notFound)
        }
        if let denial = kernel.security.authorize(principal, .get, path: "/os/node") { return .fault(denial) }
        return Response(status: .ok, contentType: NodeMetrics.contentType, body: kernel.metrics.exposition())
    }

    /// The service's WSDL (docs/services.md): its contract comes from a Lookup, which also checks
    /// the client may see the service; its operations from the type this binary has for the contract.
    func wsdlPage(_ h: HTTPRequestHead, _ path: String, as principal: Principal) async -> Response {
        let reply = await kernel.send(Message(.lookup, to: path), as: principal)
        if let f = reply.fault { return .fault(f, status: f.subcode?.local == "UnknownService" ? .notFound : nil) }
        guard let contract = reply.body?.child("Contract")?.text.trimmingXMLSpace() else {
            return .fault(Fault(.receiver, "NoContract", "Lookup of \(path) named no contract"))
        }
        let host = h.headers.first(name: "host") ?? "\(binding.host):\(binding.port)"
        let address = "\(binding.certificate == nil ? "http" : "https")://\(host)\(h.uri.prefix { $0 != "?" && $0 != "#" })"
        let document = WSDL.document(contract: contract, operations: kernel.contracts.operations[contract], address: address)
        return Response(status: .ok, contentType: WSDL.contentType, body: Array(("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + XMLWriter.pretty(document)).utf8))
    }
}

func escapeHTML(_ s: String) -> String { s.escaping(htmlEscapes) }

private let htmlEscapes: [Unicode.Scalar: String] = ["<": "&lt;", ">": "&gt;", "&": "&amp;", "\"": "&quot;"]

