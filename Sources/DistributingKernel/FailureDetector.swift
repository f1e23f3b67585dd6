import Crypto
import Infoset
import NIOCore
import NIOPosix
import ProcessKernel
import ServiceKernel
import Synchronization

/// Failure detection runs on a thread of its own: probes, acks and gossip travel as UDP datagrams
/// (on the cluster port's number) read and answered by one event loop that runs nothing else, and
/// the protocol's clock ticks there too. So a service that computes for seconds on the threads
/// that carry messages delays its own callers, but never makes its node look dead (docs/wire.md).
enum FailureDetector {
    /// One thread for every node in the process: membership work is tiny and never blocks.
    static let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1).next()
    /// A membership message larger than this (a full view for a join) goes on the control connection.
    static let maxDatagram = 1400
}

/// Hands authentic membership datagrams to the manager; drops the rest without a word to the sender.
final class DatagramHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    weak let manager: NetworkManager?

    init(manager: NetworkManager) { self.manager = manager }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let manager else { return }
        let envelope = unwrapInboundIn(data)
        guard let payload = manager.key.open(Array(envelope.data.readableBytesView)) else {
            manager.logger.debug("dropped a membership datagram from \(envelope.remoteAddress) that is not sealed with this cluster's key")
            return
        }
        manager.handleSWIM(payload, from: nil)
    }
}

extension NetworkManager {
    /// Opens the membership datagram socket on the port number the listener got.
    func bindDatagrams(port: Int) async throws {
        let channel = try await DatagramBootstrap(group: FailureDetector.loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DatagramHandler(manager: self)) }
            }
            .bind(host: config.host, port: port).get()
        state.withLock { $0.datagrams = channel }
    }

    /// Sends a membership message as a datagram; false if it must go another way (too large, no socket,
    /// an address that does not resolve).
    func sendDatagram(_ payload: [UInt8], to address: String) -> Bool {
        guard payload.count + 18 <= FailureDetector.maxDatagram,
              let channel = state.withLock({ $0.datagrams }),
              let target = resolve(address) else { return false }
        let sealed = key.seal(payload)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: channel.allocator.buffer(bytes: sealed)), promise: nil)
        return true
    }

    /// A member's "host:port" as a socket address, resolved once.
    private func resolve(_ address: String) -> SocketAddress? {
        if let known = state.withLock({ $0.resolved[address] }) { return known }
        guard let (host, port) = parseHostPort(address),
              let a = (try? SocketAddress(ipAddress: host, port: port)) ?? (try? SocketAddress.makeAddressResolvingHost(host, port: port))
        else { return nil }
        state.withLock { s in
            // Addresses of members long gone are not kept forever: past a bound, start afresh.
            if s.resolved.count >= 4096 { s.resolved = [:] }
            s.resolved[address] = a
        }
        return a
    }
}
