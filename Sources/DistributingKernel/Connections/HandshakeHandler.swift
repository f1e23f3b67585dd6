import Infoset
import NIOCore

/// The handshake of one connection (`Handshake`): sends this node's HELLO and AUTH, checks the
/// peer's, and once the peer has proved it holds the cluster key, raises the frame limit, starts
/// sealing, puts a `FrameOpener` (when frames are sealed) and a `FrameRouter` after itself, and
/// leaves the pipeline. Any other frame before that, a bad MAC, a role or sealing mismatch, or no
/// AUTH within the endpoint's deadline ends the connection with an ERROR frame saying why.
final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Wire.Frame

    let endpoint: any PeerEndpoint
    /// Set for connections this node opened; an accepted connection takes the role its peer asks for.
    let outboundRole: Handshake.Role?
    let sealer: FrameSealer
    let decoder: FrameDecoder
    let nonce = Handshake.nonce()
    private var peer: Handshake.Hello?
    private var role: Handshake.Role?
    /// Both HELLOs as they went on the wire: each AUTH is a MAC over the two.
    private var myHello: [UInt8] = []
    private var theirHello: [UInt8] = []
    private var refused = false
    private var deadline: Scheduled<Void>?

    init(endpoint: any PeerEndpoint, outboundRole: Handshake.Role?, sealer: FrameSealer, decoder: FrameDecoder) {
        self.endpoint = endpoint
        self.outboundRole = outboundRole
        self.sealer = sealer
        self.decoder = decoder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        begin(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    /// Says HELLO first on a connection this node opened, and starts the deadline.
    private func begin(_ context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        if let outboundRole { sendHello(context.channel, outboundRole) }
        let channel = context.channel
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: endpoint.handshakeTimeout) {
            handler.value.refuse(channel, "no authentication within the handshake timeout")
        }
    }

    private func sendHello(_ channel: any Channel, _ role: Handshake.Role) {
        self.role = role
        myHello = endpoint.hello(role: role, nonce: nonce).encoded()
        writeNow(Wire.Frame(.hello, myHello), on: channel)
    }

    /// Writes a handshake frame at once, on the event loop: nothing else is written before the
    /// peer has authenticated (the `PeerConnection` senders post to is made then).
    private func writeNow(_ frame: Wire.Frame, on channel: any Channel) {
        channel.writeAndFlush(channel.allocator.buffer(bytes: frame.encoded()), promise: nil)
    }

    private func refuse(_ channel: any Channel, _ reason: String) {
        guard !refused else { return }
        refused = true
        PeerPipeline.refuse(channel, peer: peer?.node, reason, logger: endpoint.logger)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let frame = unwrapInboundIn(data)
        let channel = context.channel
        switch frame.known {
        case .hello where peer == nil:
            guard let hello = try? Handshake.Hello.decode(frame.payload) else { return refuse(channel, "malformed hello") }
            guard hello.node != endpoint.node else { return refuse(channel, "a node cannot connect to itself (both named \(hello.node))") }
            if let outboundRole, hello.role != outboundRole { return refuse(channel, "role mismatch") }
            if let problem = Handshake.sealingProblem(mine: endpoint.encrypt, theirs: hello) { return refuse(channel, problem) }
            peer = hello
            theirHello = frame.payload
            if role == nil { sendHello(channel, hello.role) }
            writeNow(Wire.Frame(.auth, endpoint.key.mac(fromHello: myHello, toHello: theirHello)), on: channel)
        case .auth:
            guard let peer, let role else { return refuse(channel, "auth before hello") }
            guard let peerKey = endpoint.key.keyIndex(accepting: frame.payload, fromHello: theirHello, toHello: myHello) else {
                return refuse(channel, "authentication failed: the peer does not hold this cluster's key, or its HELLO was changed on the way")
            }
            authenticated(context, peer: peer, role: role, peerKey: peerKey)
        case .error:
            var r = ByteReader(frame.payload)
            endpoint.logger.warning("peer \(peer?.node ?? "?") refused us: \((try? r.string()) ?? "?")")
            refused = true
            channel.close(promise: nil)
        default:
            refuse(channel, "frame type \(frame.type) before authentication")
        }
    }

    /// Our AUTH went out before this point, unsealed; everything after it is sealed, and
    /// everything the peer sends after its AUTH is too. The handlers that carry the connection
    /// from now on go in after this one, which then leaves: a later frame of this same read
    /// already goes to them.
    private func authenticated(_ context: ChannelHandlerContext, peer: Handshake.Hello, role: Handshake.Role, peerKey: Int) {
        var next: [any ChannelHandler] = []
        if endpoint.encrypt {
            let session = endpoint.key.ciphers(role: role, myNonce: nonce, theirNonce: peer.nonce, me: endpoint.node, peer: peer.node, peerKey: peerKey)
            sealer.start(session.sending)
            next.append(FrameOpener(session.receiving, peer: peer.node, logger: endpoint.logger))
        }
        let connection = PeerConnection(context.channel)
        next.append(FrameRouter(endpoint: endpoint, peer: peer.node, role: role, connection: connection,
                                backlog: RequestBacklog(context.channel, owed: endpoint.answersOwed)))
        do {
            try context.pipeline.syncOperations.addHandlers(next, position: .after(self))
        } catch {
            return refuse(context.channel, "cannot set up the connection: \(error)")
        }
        decoder.limit = Wire.maxFrame
        deadline?.cancel()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        endpoint.authenticated(connection, peer: peer, role: role, outbound: outboundRole != nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        refuse(context.channel, "\(error)")
    }
}
