import NIOCore
import NIOHTTP1
import NIOPosix

/// The gateway's baseline: a bare SwiftNIO HTTP/1.1 server that answers every request with the
/// counter's state bytes, with no kernel, no XML and no async bridging. The floor for the gateway.
final class FixedReply: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    static let body: [UInt8] = Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?><CounterState><Value>0</Value></CounterState>".utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/xml; charset=utf-8")
        headers.add(name: "Content-Length", value: String(FixedReply.body.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: FixedReply.body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

func httpFloor() async throws {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 256)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                try channel.pipeline.syncOperations.addHandler(FixedReply())
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    print("serving http://127.0.0.1:\(channel.localAddress!.port!)/")
    try await channel.closeFuture.get()
}
