import Infoset
import Logging
import NIOCore
import ServiceKernel

/// One connection to another node, on its event loop: reads its frames, runs the handshake, and
/// only once the peer has proved it holds the cluster key hands its frames to the network manager.
/// Anything else before that — another frame type, a bad MAC, garbage — ends the connection with
/// an error frame; so does a malformed frame at any time. After the handshake every frame is
/// sealed both ways (`FrameCipher`): `sealer` seals what this node writes, `opener` opens what
/// it reads, and a frame that does not open ends the connection.
final class PeerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let manager: NetworkManager
    /// Set for connections this node opened; an accepted connection takes the role its peer asks for.
    let outboundRole: Handshake.Role?
    let nonce = Handshake.nonce()
    var peer: Handshake.Hello?
    /// Both HELLOs as they went on the wire: each AUTH is a MAC over the two.
    var myHello: [UInt8] = []
    var theirHello: [UInt8] = []
    var role: Handshake.Role?
    var authenticated = false
    var sentHello = false
    var refused = false
    var reader = FrameReader(maxFrame: Wire.maxFrame)
    let sealer: FrameSealer
    var opener: FrameCipher?
    /// The peer's requests not yet answered.
    let backlog: RequestBacklog

    init(manager: NetworkManager, outboundRole: Handshake.Role?, sealer: FrameSealer, backlog: RequestBacklog) {
        self.manager = manager
        self.outboundRole = outboundRole
        self.sealer = sealer
        self.backlog = backlog
    }

    /// The handlers of a peer connection, outermost first.
    static func pipeline(manager: NetworkManager, outboundRole: Handshake.Role?, channel: any Channel) -> [any ChannelHandler] {
        let sealer = FrameSealer()
        return [sealer, PeerHandler(manager: manager, outboundRole: outboundRole, sealer: sealer, backlog: RequestBacklog(channel))]
    }

    func channelActive(context: ChannelHandlerContext) {
        if let outboundRole { sendHello(context.channel, outboundRole) }
        // A peer that has not authenticated within the deadline is cut off.
        let channel = context.channel
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: manager.config.handshakeTimeout) {
            if !bound.value.authenticated && channel.isActive {
                bound.value.refuse(channel, "no authentication within the handshake timeout")
            }
        }
        context.fireChannelActive()
    }

    func sendHello(_ channel: any Channel, _ role: Handshake.Role) {
        sentHello = true
        self.role = role
        let hello = Handshake.Hello(role: role, node: manager.node, address: manager.advertised, nonce: nonce, sealed: manager.config.encrypt,
                                    planes: PlaneKind.bits(manager.offered), epoch: manager.config.epoch)
        myHello = hello.encoded()
        writeNow(Wire.Frame(.hello, myHello), on: channel)
    }

    /// Writes a handshake frame at once, on the event loop, ahead of anything queued: frames
    /// queued in the Outbox are written later, and by then sealing may have started.
    func writeNow(_ frame: Wire.Frame, on channel: any Channel) {
        channel.writeAndFlush(channel.allocator.buffer(bytes: frame.encoded()), promise: nil)
    }

    func refuse(_ channel: any Channel, _ reason: String) {
        guard !refused else { return }
        refused = true
        manager.logger.warning("refused peer \(peer?.node ?? "?") at \(channel.remoteAddress?.description ?? "?"): \(reason)")
        var w = ByteWriter()
        w.string(reason)
        channel.writeAndFlush(channel.allocator.buffer(bytes: Wire.Frame(.error, w.bytes).encoded())).whenComplete { _ in
            channel.close(promise: nil)
        }
        authenticated = false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        let channel = context.channel
        do {
            try reader.read(&bytes, limit: { self.authenticated ? Wire.maxFrame : Wire.maxHandshakeFrame }) { frame in
                handle(frame, on: channel)
                return !refused
            }
        } catch {
            refuse(channel, error.description)
        }
    }

    func handle(_ frame: Wire.Frame, on channel: any Channel) {
        if authenticated, let peer, let role {
            guard let opener else { return manager.received(frame, from: peer.node, role: role, on: channel, backlog: backlog) }
            if let frames = opener.open(frame) {
                for f in frames where !refused { manager.received(f, from: peer.node, role: role, on: channel, backlog: backlog) }
                return
            }
            // An error frame that does not open is the peer refusing us before it sealed anything
            // (it did not accept our AUTH): say what it said, marked as unauthenticated.
            var r = ByteReader(frame.payload)
            if frame.known == .error, let reason = try? r.string() {
                manager.logger.warning("peer \(peer.node) refused us (unsealed, so unauthenticated): \(reason)")
                channel.close(promise: nil)
                return
            }
            return refuse(channel, "a frame from \(peer.node) failed to open: changed, replayed or dropped on the way, or not sent by the peer")
        }
        switch frame.known {
        case .hello where peer == nil:
            guard let hello = try? Handshake.Hello.decode(frame.payload) else { return refuse(channel, "malformed hello") }
            guard hello.node != manager.node else { return refuse(channel, "a node cannot connect to itself (both named \(hello.node))") }
            if let outboundRole, hello.role != outboundRole { return refuse(channel, "role mismatch") }
            if let problem = Handshake.sealingProblem(mine: manager.config.encrypt, theirs: hello) { return refuse(channel, problem) }
            peer = hello
            theirHello = frame.payload
            if !sentHello { sendHello(channel, hello.role) }
            writeNow(Wire.Frame(.auth, manager.key.mac(fromHello: myHello, toHello: theirHello)), on: channel)
        case .auth:
            guard let peer, let role else { return refuse(channel, "auth before hello") }
            guard let peerKey = manager.key.keyIndex(accepting: frame.payload, fromHello: theirHello, toHello: myHello) else {
                return refuse(channel, "authentication failed: the peer does not hold this cluster's key, or its HELLO was changed on the way")
            }
            // Our AUTH went out before this point, unsealed; everything after it is sealed, and
            // everything the peer sends after its AUTH is too.
            if manager.config.encrypt {
                let session = manager.key.ciphers(role: role, myNonce: nonce, theirNonce: peer.nonce, me: manager.node, peer: peer.node, peerKey: peerKey)
                sealer.start(session.sending)
                opener = session.receiving
            }
            authenticated = true
            manager.authenticated(channel, peer: peer, role: role, outbound: outboundRole != nil)
        case .error:
            var r = ByteReader(frame.payload)
            manager.logger.warning("peer \(peer?.node ?? "?") refused us: \((try? r.string()) ?? "?")")
            channel.close(promise: nil)
        default:
            refuse(channel, "frame type \(frame.type) before authentication")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if authenticated, let peer, let role { manager.closed(context.channel, peer: peer.node, role: role) }
        authenticated = false
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        refuse(context.channel, "\(error)")
    }
}
