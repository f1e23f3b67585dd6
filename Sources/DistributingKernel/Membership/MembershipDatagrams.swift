import Addresses
import Crypto
import Dispatch
import Infoset
import NIOCore
import NIOPosix
import ProcessKernel
import ServiceKernel
import Synchronization

/// Membership's datagrams, and so failure detection, run on a thread of their own: probes, acks
/// and gossip travel as UDP datagrams (on the cluster port's number) read and answered by one
/// event loop that runs nothing else, and the protocol's clock ticks there too. So a service that
/// computes for seconds on the threads that carry messages delays its own callers, but never makes
/// its node look dead (docs/wire.md).
enum MembershipDatagrams {
    /// One thread for every node in the process: membership work is tiny and never blocks.
    static let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1).next()
    /// Where members' host names are looked up, each on a thread of its own (so one name whose
    /// DNS server never answers does not hold up the others): a lookup may wait seconds, and on
    /// `loop` that would stop the failure detector's clock.
    static let resolver = DispatchQueue(label: "decos.membership.resolver", attributes: .concurrent)
    /// The most names one node looks up at once; past it a member known only by name is reached
    /// on its control connection until a lookup ends.
    static let maxResolving = 64
    /// A membership message larger than this (a full view for a join) goes on the control connection.
    static let maxDatagram = 1400

    /// A membership datagram as it goes on the wire, sealed: `u64 epoch | u64 sequence | string
    /// to | SWIM message` — the sender's life, the datagram's number in it, and the node it is for.
    static func datagram(_ swim: [UInt8], epoch: UInt64, sequence: UInt64, to: String, key: ClusterKey) -> [UInt8] {
        var w = ByteWriter(capacity: swim.count + 24 + to.utf8.count)
        w.u64(epoch)
        w.u64(sequence)
        w.string(to)
        w.bytes += swim
        return key.seal(w.bytes)
    }

    /// An opened datagram's parts; nil when malformed.
    static func parse(_ opened: [UInt8]) -> (epoch: UInt64, sequence: UInt64, to: String, from: Membership.Member, message: Membership.Message)? {
        var r = ByteReader(opened)
        guard let epoch = try? r.u64(), let sequence = try? r.u64(), let to = try? r.string(),
              let (from, message) = try? Wire.decodeSWIM(Array(opened[r.offset...])) else { return nil }
        return (epoch, sequence, to, from, message)
    }
}

/// Counts of the datagrams `DatagramHandler` drops, by why.
final class DroppedDatagrams: Sendable {
    let unsealed = Atomic<Int>(0)
    let replayed = Atomic<Int>(0)
    /// Membership frames from peer connections waiting for membership's loop, and those dropped
    /// because too many were (`NetworkManager.maxQueuedSWIM`).
    let queued = Atomic<Int>(0)
    let overflowed = Atomic<Int>(0)
}

/// Hands authentic, fresh membership datagrams to the manager; drops the rest without a word to
/// the sender. A datagram is `u64 epoch | u64 sequence | string to | SWIM message`, sealed: the
/// sender's epoch and the sequence name it, and each is taken once (`ReplayWindows`), so a host on
/// the path that recorded "X is dead" cannot say it again after X came back or restarted; one
/// addressed to another node is dropped, so it cannot be replayed to a third.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    weak let manager: NetworkManager?

    init(manager: NetworkManager) { self.manager = manager }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let manager else { return }
        let envelope = unwrapInboundIn(data)
        guard let opened = manager.key.open(Array(envelope.data.readableBytesView)) else {
            manager.logger.debug("dropped a membership datagram from \(envelope.remoteAddress) that is not sealed with this cluster's key")
            manager.droppedDatagrams.unsealed.add(1, ordering: .relaxed)
            return
        }
        guard let d = MembershipDatagrams.parse(opened) else {
            return manager.logger.warning("malformed membership datagram from \(envelope.remoteAddress)")
        }
        let (from, message) = (d.from, d.message)
        // A datagram for another node, sent here again, is a replay too.
        guard d.to == manager.node, manager.replayWindows.withLock({ $0.accept(from: from.name, epoch: d.epoch, sequence: d.sequence) }) else {
            manager.droppedDatagrams.replayed.add(1, ordering: .relaxed)
            return manager.logger.debug("dropped a replayed or stale membership datagram from \(from.name) (\(envelope.remoteAddress))")
        }
        manager.handleSWIM(from: from, message)
    }
}

extension NetworkManager {
    /// Opens the membership datagram socket on the port number the listener got.
    func bindDatagrams(port: Int) async throws {
        let channel = try await DatagramBootstrap(group: MembershipDatagrams.loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(DatagramHandler(manager: self)) }
            }
            .bind(host: config.host, port: port).get()
        try await withMembership { $0.datagrams = channel }
    }

    /// Sends a membership message as a datagram to `node` at `address`; false if it must go another
    /// way (too large, no socket, an address that does not resolve, a member not known by name).
    func sendDatagram(_ payload: [UInt8], to node: String, address: String) -> Bool {
        guard !node.isEmpty, payload.count + 24 + node.utf8.count + 30 <= MembershipDatagrams.maxDatagram,
              let channel = shell.value.datagrams,
              let target = resolve(address) else { return false }
        let sealed = MembershipDatagrams.datagram(payload, epoch: config.epoch, sequence: datagramSequence.wrappingAdd(1, ordering: .relaxed).newValue,
                                              to: node, key: key)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: channel.allocator.buffer(bytes: sealed)), promise: nil)
        return true
    }

    /// A member's "host:port" as a socket address. An IP address is taken as it is; a name is
    /// looked up once, on `MembershipDatagrams.resolver`, never here: until its answer comes, the
    /// member's messages go on its control connection (nil). A name that did not resolve is said
    /// once and looked up again after `MembershipShell.retryLookupAfter`.
    private func resolve(_ address: String) -> SocketAddress? {
        if let known = shell.value.resolved[address] { return known }
        guard let (host, port) = parseHostPort(address) else { return nil }
        if let literal = try? SocketAddress(ipAddress: host, port: port) {
            remember(address, literal)
            return literal
        }
        if let failed = shell.value.unresolved[address], now < failed &+ shell.value.retryLookupAfter { return nil }
        guard !shell.value.resolving.contains(address), shell.value.resolving.count < MembershipDatagrams.maxResolving else { return nil }
        shell.value.resolving.insert(address)
        let lookUp = shell.value.lookUpHost
        MembershipDatagrams.resolver.async { [weak self] in
            let found = lookUp(host, port)
            MembershipDatagrams.loop.execute {
                guard let self else { return }
                self.shell.value.resolving.remove(address)
                if let found {
                    self.shell.value.unresolved[address] = nil
                    self.remember(address, found)
                } else {
                    if self.shell.value.unresolved[address] == nil {
                        self.logger.warning("member address \(address) does not resolve: its membership messages go on its control connection")
                    }
                    if self.shell.value.unresolved.count >= 4096 { self.shell.value.unresolved = [:] }
                    self.shell.value.unresolved[address] = self.now
                }
            }
        }
        return nil
    }

    private func remember(_ address: String, _ socketAddress: SocketAddress) {
        // Addresses of members long gone are not kept forever: past a bound, start afresh.
        if shell.value.resolved.count >= 4096 { shell.value.resolved = [:] }
        shell.value.resolved[address] = socketAddress
    }
}
