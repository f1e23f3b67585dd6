import Infoset
import Logging
import NIOCore
import ServiceKernel

/// One connection to another node, on its event loop: reads its frames, runs the handshake, and
/// only once the peer has proved it holds the cluster key hands its frames to the network manager.
/// Anything else before that — another frame type, a bad MAC, garbage — ends the connection with
/// an error frame; so does a malformed frame at any time.
final class PeerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let manager: NetworkManager
    /// Set for connections this node opened; an accepted connection takes the role its peer asks for.
    let outboundRole: Handshake.Role?
    let nonce = Handshake.nonce()
    var peer: Handshake.Hello?
    var role: Handshake.Role?
    var authenticated = false
    var sentHello = false
    var refused = false
    var reader = FrameReader(maxFrame: Wire.maxFrame)

    init(manager: NetworkManager, outboundRole: Handshake.Role?) {
        self.manager = manager
        self.outboundRole = outboundRole
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
        let hello = Handshake.Hello(role: role, node: manager.node, address: manager.advertised, nonce: nonce)
        channel.send(Wire.Frame(.hello, hello.encoded()))
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
            manager.received(frame, from: peer.node, role: role, on: channel)
            return
        }
        switch frame.known {
        case .hello where peer == nil:
            guard let hello = try? Handshake.Hello.decode(frame.payload) else { return refuse(channel, "malformed hello") }
            guard hello.node != manager.node else { return refuse(channel, "a node cannot connect to itself (both named \(hello.node))") }
            if let outboundRole, hello.role != outboundRole { return refuse(channel, "role mismatch") }
            peer = hello
            if !sentHello { sendHello(channel, hello.role) }
            let mac = manager.key.mac(role: hello.role, fromNonce: nonce, toNonce: hello.nonce, from: manager.node, to: hello.node)
            channel.send(Wire.Frame(.auth, mac))
        case .auth:
            guard let peer, let role else { return refuse(channel, "auth before hello") }
            guard manager.key.accepts(frame.payload, role: role, fromNonce: peer.nonce, toNonce: nonce, from: peer.node, to: manager.node) else { return refuse(channel, "authentication failed: the peer does not hold this cluster's key") }
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
