import Infoset
import Logging
import NIOCore
import ServiceKernel

/// What a peer connection needs of the node it belongs to: who this node is, its key, and where
/// authenticated frames go. `NetworkManager` is one; the pipeline's tests give another.
protocol PeerEndpoint: AnyObject, Sendable {
    var node: String { get }
    var logger: Logger { get }
    var key: ClusterKey { get }
    var handshakeTimeout: TimeAmount { get }
    /// Whether frames are sealed after the handshake (every node of a cluster agrees).
    var encrypt: Bool { get }
    /// Where the requests of every connection are counted until answered.
    var answersOwed: AnswersOwed? { get }
    /// This node's HELLO for a connection in `role`, nonce aside.
    func hello(role: Handshake.Role, nonce: [UInt8]) -> Handshake.Hello
    func authenticated(_ connection: PeerConnection, peer: Handshake.Hello, role: Handshake.Role, outbound: Bool)
    func closed(_ connection: PeerConnection, peer: String, role: Handshake.Role)
    func received(_ frame: Wire.Frame, from peer: String, role: Handshake.Role, on connection: PeerConnection, backlog: RequestBacklog)
}

/// One connection to another node, as a pipeline of handlers with a job each, outermost first:
///
///     FrameSealer (outbound: seals writes once started)
///     FrameDecoder (bytes → frames, within the limit of the connection's stage)
///     HandshakeHandler (HELLO, AUTH; removes itself once the peer is authenticated)
///     FrameOpener (opens SEALED frames; added by the handshake when frames are sealed)
///     FrameRouter (hands each frame to the endpoint)
///
/// Before the handshake nothing but HELLO, AUTH and ERROR passes; after it, a frame that does not
/// open ends the connection. Frames leave through the `PeerConnection` the handshake makes.
enum PeerPipeline {
    /// The handlers of a new connection: `outboundRole` for one this node opened, nil for one it
    /// accepted (which takes the role its peer asks for).
    static func handlers(endpoint: any PeerEndpoint, outboundRole: Handshake.Role?) -> [any ChannelHandler] {
        let sealer = FrameSealer(), decoder = FrameDecoder()
        return [sealer, decoder, HandshakeHandler(endpoint: endpoint, outboundRole: outboundRole, sealer: sealer, decoder: decoder)]
    }

    /// Ends a connection saying why: an ERROR frame, then the close once it is written.
    static func refuse(_ channel: any Channel, peer: String?, _ reason: String, logger: Logger) {
        logger.warning("refused peer \(peer ?? "?") at \(channel.remoteAddress?.description ?? "?"): \(reason)")
        var w = ByteWriter()
        w.string(reason)
        channel.writeAndFlush(channel.allocator.buffer(bytes: Wire.Frame(.error, w.bytes).encoded())).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// The last handler of an authenticated connection: every frame to the endpoint, and the close.
final class FrameRouter: ChannelInboundHandler {
    typealias InboundIn = Wire.Frame

    let endpoint: any PeerEndpoint
    let peer: String
    let role: Handshake.Role
    /// What the node's parts send on.
    let connection: PeerConnection
    /// The peer's requests not yet answered.
    let backlog: RequestBacklog

    init(endpoint: any PeerEndpoint, peer: String, role: Handshake.Role, connection: PeerConnection, backlog: RequestBacklog) {
        self.endpoint = endpoint
        self.peer = peer
        self.role = role
        self.connection = connection
        self.backlog = backlog
    }

    /// Set once the connection is refused: nothing more of it reaches the node.
    private var refused = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        endpoint.received(unwrapInboundIn(data), from: peer, role: role, on: connection, backlog: backlog)
    }

    func channelInactive(context: ChannelHandlerContext) {
        endpoint.closed(connection, peer: peer, role: role)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !refused else { return }
        refused = true
        PeerPipeline.refuse(context.channel, peer: peer, "\(error)", logger: endpoint.logger)
    }
}
