import Addresses
import Infoset
import Logging
import NIOCore
import NIOPosix
import ServiceKernel
import Synchronization
import ProcessKernel

/// How this node joins a cluster.
public struct ClusterConfig: Sendable {
    public var node: String
    public var host: String
    public var port: Int
    /// The address other nodes reach this one at; the listen address unless set.
    public var advertise: String?
    public var seeds: [String]
    public var key: ClusterKey
    public var membership = Membership.Config()
    public var requestTimeout: TimeAmount = .seconds(10)
    /// How long a data link no buffer moves on stays open.
    public var dataLinkIdle: TimeAmount = .seconds(30)
    public var handshakeTimeout: TimeAmount = .seconds(5)
    /// The data planes this node offers for buffers, in its order of preference
    /// (`<DataPlane prefer="rdma xdp tcp"/>`); those it does not have are left out.
    public var dataPlanes: [PlaneKind] = [.rdma, .xdp, .tcp]
    /// The most buffer bytes one request from a peer may refer to: they are allocated on arrival.
    public var maxBufferBytes = 2 << 30
    /// Whether frames between nodes are sealed (AES-256-GCM) after the handshake; every node of a
    /// cluster must agree. Off only where the network is trusted and the cost matters
    /// (docs/security.md). Membership datagrams are sealed either way.
    public var encrypt = true
    /// Milliseconds between anti-entropy exchanges of the directory with a random peer.
    public var syncInterval: UInt64 = 2000
    /// This life of the node (`Epoch`): the clock at boot unless a test sets it.
    public var epoch = Epoch.now()

    /// The address of the interface the cluster uses: the listen host, or where it listens on
    /// all interfaces, the advertised one.
    var interfaceAddress: String {
        guard ["0.0.0.0", "::", ""].contains(host), let advertised = advertise.flatMap(parseHostPort) else { return host }
        return advertised.host
    }

    public init(node: String, host: String, port: Int, seeds: [String], key: ClusterKey) {
        self.node = node
        self.host = host
        self.port = port
        self.seeds = seeds
        self.key = key
    }
}

/// The network manager: connections to peers, membership, the shared namespace, remote dispatch;
/// buffers move on its data plane (`DataPlane`).
public final class NetworkManager: RemoteDispatcher, Sendable {
    public let kernel: Kernel
    public let config: ClusterConfig
    let logger: Logger
    var node: String { config.node }
    var key: ClusterKey { config.key }
    private let bound = Mutex<String?>(nil)
    /// Where peers reach this node (the bound address, known once listening).
    var advertised: String { config.advertise ?? bound.withLock { $0 } ?? "\(config.host):\(config.port)" }
    private let started = ContinuousClock.now
    let state = Mutex(State())
    /// Membership, on its own loop (MembershipShell.swift).
    let shell: NIOLoopBoundBox<MembershipShell>
    /// Control connections, and what each peer said in its HELLO.
    let links = ControlLinks()
    /// The members as of membership's last change, for routing, `/os/cluster` and the metrics,
    /// read from any thread (`publishMembers`).
    let memberView = Mutex(MemberView())
    /// The calls this node waits on (`RemoteCalls.swift`).
    let calls = CallTable()
    /// Requests and notifications kept in order per peer and service.
    let lanes = RequestLanes()
    /// Peers' requests taken and not yet answered, over every connection: `stop` lets them go out.
    let answersOwed: AnswersOwed? = AnswersOwed()
    /// Whether the node has begun to stop: a peer's request that arrives now is answered with a
    /// `Stopping` fault rather than taken (`answersOwed` is closed).
    public var isStopping: Bool { answersOwed?.isClosed ?? false }
    /// This node's copy of the shared namespace (`NamespaceSync.swift` drives it).
    let namespace: Mutex<NamespaceReplica>
    /// Numbers requests so their replies can be matched (RelatesTo on the wire).
    let correlations = Atomic<UInt64>(1)
    /// Numbers this life's membership datagrams, for receivers' replay windows.
    let datagramSequence = Atomic<UInt64>(0)
    /// Membership datagrams dropped: not sealed with the cluster's key, or taken before (a replay).
    let droppedDatagrams = DroppedDatagrams()
    /// Which datagrams of each sender were taken (`ReplayWindow`): the failure detector's loop
    /// takes the lock per datagram; a HELLO, when a peer restarts.
    let replayWindows = Mutex(ReplayWindows())
    /// `now` at the last tick of the protocol's clock: deadlines are enforced by a sweep each
    /// tick, so a call reads this instead of the system clock.
    let lastTick = Atomic<UInt64>(0)
    /// Where referenced buffers move: every plane this node has, by kind (the TCP plane always).
    let tcp: TCPPlane
    /// Where there is an RDMA device with its port up and the manifest does not leave RDMA out.
    let rdma: RDMAPlane?
    /// Where the cluster listens on one Ethernet interface's address and XDP can be attached to it.
    let xdp: XDPPlane?
    let planes: [PlaneKind: any DataPlane]

    /// The manager's own: its listener and clock, and the epochs peers were last heard in (restart
    /// detection, asked from any connection's loop as each handshake ends).
    struct State {
        /// The latest epoch heard from each peer (its HELLO, or membership): a higher one is a restart.
        var epochs: [String: UInt64] = [:]
        var server: (any Channel)?
        var ticker: RepeatedTask?
    }

    public init(kernel: Kernel, config: ClusterConfig, logger: Logger) {
        self.kernel = kernel
        self.config = config
        self.logger = logger
        self.tcp = TCPPlane(config: config, logger: logger, pools: kernel.pools)
        self.rdma = config.dataPlanes.contains(.rdma) ? RDMAPlane.open(pools: kernel.pools, logger: logger) : nil
        self.xdp = config.dataPlanes.contains(.xdp)
            ? XDPPlane.open(address: config.interfaceAddress, node: config.node, sealed: config.encrypt, pools: kernel.pools, logger: logger) : nil
        var planes: [PlaneKind: any DataPlane] = [.tcp: tcp]
        planes[.rdma] = rdma
        planes[.xdp] = xdp
        self.planes = planes
        var seed: UInt64 = 0
        for b in config.node.utf8 { seed = seed &* 31 &+ UInt64(b) }
        seed ^= UInt64(UInt(bitPattern: ObjectIdentifier(kernel).hashValue))
        shell = .makeBoxSendingValue(MembershipShell(membership: Membership(name: config.node, address: "\(config.host):\(config.port)",
                                                                           config: config.membership, seed: seed,
                                                                           incarnation: Epoch.firstIncarnation(config.epoch))),
                                     eventLoop: MembershipDatagrams.loop)
        // Its version starts above every earlier life's, so a restart's table outranks the old one's.
        namespace = Mutex(NamespaceReplica(node: config.node, firstVersion: Epoch.firstVersion(config.epoch)))
        tcp.attach(to: self)
        rdma?.attach(to: self)
        xdp?.attach(to: self)
    }

    var now: UInt64 {
        let d = ContinuousClock.now - started
        return UInt64(d.components.seconds) * 1000 + UInt64(d.components.attoseconds / 1_000_000_000_000_000)
    }

    // MARK: starting and stopping

    /// Listens for peers; returns the bound address.
    public func bind() async throws -> SocketAddress {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(PeerPipeline.handlers(endpoint: self, outboundRole: nil))
                }
            }
            .bind(host: config.host, port: config.port).get()
        let address = server.localAddress!
        let advertise = config.advertise ?? "\(address.ipAddress ?? config.host):\(address.port ?? config.port)"
        bound.withLock { $0 = advertise }
        do { try await bindDatagrams(port: address.port!) } catch {
            server.close(promise: nil)
            throw ClusterError(description: "cannot open UDP port \(address.port!) on \(config.host) for membership datagrams: \(error)")
        }
        state.withLock { $0.server = server }
        let config = self.config
        try await withMembership { [self] s in
            s.membership = Membership(name: config.node, address: advertise, config: config.membership,
                                      seed: UInt64(truncatingIfNeeded: advertise.hashValue), incarnation: Epoch.firstIncarnation(config.epoch))
            publishMembers(s)
        }
        return address
    }

    /// Joins through the seeds and runs the protocol until `stop`.
    public func start() {
        lastTick.store(now, ordering: .relaxed)
        if offered.isEmpty {
            logger.warning("no data plane offered for buffers: this node prefers \(config.dataPlanes.map(\.name).joined(separator: " ")) and has only \(planes.keys.map(\.name).sorted().joined(separator: " ")); calls carrying buffers to or from other nodes will fault")
        }
        kernel.remote = self
        kernel.metrics.onScrape { [weak self] in self?.collectMetrics($0) }
        kernel.uris.observe { [weak self] _ in self?.localTableChanged() }
        // The services registered before now: the replica's table starts with them.
        localTableChanged()
        let seeds = config.seeds.filter { $0 != advertised }
        onMembershipLoop { [self] in perform(shell.value.membership.join(seeds: seeds)) }
        // The protocol's clock runs on the failure detector's own thread, like its datagrams.
        let ticker = MembershipDatagrams.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(Int64(tickMillis))) { [weak self] task in
            guard let self else { return task.cancel() }
            let now = self.now
            self.lastTick.store(now, ordering: .relaxed)
            self.perform(self.shell.value.membership.tick(now: now))
            self.expireCalls(now: now)
            for p in self.planes.values { p.tick(now: now) }
            if now >= self.shell.value.lastSync + self.config.syncInterval {
                self.shell.value.lastSync = now
                self.antiEntropy()
            }
            self.keepSubscriptions(now: now)
        }
        state.withLock { $0.ticker = ticker }
    }

    /// Each second, ends remote subscriptions to this node whose lease ran out; each
    /// `Follows.renewInterval`, renews those this node holds on others. On membership's loop, as
    /// its clock ticks.
    func keepSubscriptions(now: UInt64) {
        if now >= shell.value.lastLeaseSweep + 1000 {
            shell.value.lastLeaseSweep = now
            kernel.expireLeases()
        }
        if now >= shell.value.lastRenewal + Follows.renewInterval {
            shell.value.lastRenewal = now
            kernel.renewFollows()
        }
    }

    /// Answers the requests peers are owed (for up to two seconds: the reply to a power request
    /// that came from another node among them), leaves the cluster (peers drop this node at once)
    /// and closes every connection.
    public func stop() async {
        answersOwed?.close()
        await answersOwed?.drained(within: .seconds(2))
        let (farewell, me, datagrams) = (try? await withMembership { s in (s.membership.leave(), s.membership.me, s.datagrams) }) ?? ([], nil, nil)
        if let me { await sayFarewell(farewell, from: me) }
        let (ticker, server) = state.withLock { s in (s.ticker, s.server) }
        ticker?.cancel()
        server?.close(promise: nil)
        datagrams?.close(promise: nil)
        for p in planes.values { p.stop() }
        for c in links.all { c.close() }
        kernel.remote = nil
    }

    /// Sends the farewell `leave` gave to each live member over its control connection, and
    /// returns once each has been written — or after a second, so a member that does not answer
    /// cannot hold up the stop. Each connection writes on its loop in order, so a job submitted
    /// there after the farewell runs once the farewell has been handed to the socket.
    private func sayFarewell(_ effects: [Membership.Effect], from me: Membership.Member) async {
        let done = OneShot<Void>()
        Task {
            await withTaskGroup(of: Void.self) { group in
                for case .send(let to, let address, let message) in effects {
                    group.addTask { [self] in
                        // On the connections the member opened to this node, where this node's
                        // replies to it went: there the farewell comes after them, and the member
                        // does not take this node for gone (failing its calls) before it has read
                        // them. Only where it opened none, on this node's own.
                        var connections = links.inbound(from: to)
                        if connections.isEmpty, let own = await connection(to: to, address: address) { connections = [own] }
                        for c in connections {
                            c.send(Wire.Frame(.swim, Wire.encode(message, from: me)))
                            try? await c.channel.eventLoop.submit {}.get()
                        }
                    }
                }
            }
            done.finish(())
        }
        Task {
            try? await Task.sleep(for: .seconds(1))  // the bound, not a wait for the writes
            done.finish(())
        }
        await done.wait()
    }

    /// Where `peer` listens: from membership, or from its handshake (a peer may call before
    /// membership has told this node about it).
    func address(of peer: String) -> String? {
        let member = memberView.withLock { $0.members[peer] }
        if let member, member.status <= .suspect { return member.address }
        // A dead member's address may be its old life's: a HELLO since says where it is now.
        return links.hello(of: peer)?.address ?? member?.address
    }

    /// The peers this node has a data link open (or opening) to.
    public var openDataLinks: [String] { tcp.openLinks }

    /// Members as this node sees them.
    public var members: [Membership.Member] {
        memberView.withLock { v in (v.me.map { [$0] } ?? []) + v.members.values.sorted { $0.name < $1.name } }
    }

    // MARK: connections

    /// The authenticated control connection to `node` at `address`, opened if need be; nil if it cannot be had.
    func connection(to node: String, address: String) async -> PeerConnection? {
        let key = node.isEmpty ? "@" + address : node
        switch links.step(key) {
        case .ready(let c): return c
        case .wait: return await links.wait(for: key)
        case .connect:
            let connection = await open(address)
            links.opened(key, connection)
            return connection
        }
    }

    /// Connects and waits for the handshake to finish.
    private func open(_ address: String) async -> PeerConnection? {
        guard let (host, port) = parseHostPort(address) else { return nil }
        let ready = Ready()
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(3))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { [self] channel in
                    links.handshaking(channel, ready)
                    channel.closeFuture.whenComplete { [weak self] _ in
                        ready.finish(nil)
                        self?.links.handshakeEnded(channel)
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(PeerPipeline.handlers(endpoint: self, outboundRole: .control))
                    }
                }
                .connect(host: host, port: port).get()
            _ = channel
        } catch {
            ready.finish(nil)
        }
        return await ready.wait()
    }
}

extension NetworkManager: PlaneHost {
    func sendControl(_ frame: Wire.Frame, to peer: String) {
        guard let address = address(of: peer) else { return }
        sendFrame(frame, to: peer, address: address)
    }
}

extension NetworkManager: PeerEndpoint {
    var handshakeTimeout: TimeAmount { config.handshakeTimeout }
    var encrypt: Bool { config.encrypt }

    func hello(role: Handshake.Role, nonce: [UInt8]) -> Handshake.Hello {
        Handshake.Hello(role: role, node: node, address: advertised, nonce: nonce, sealed: config.encrypt,
                        planes: PlaneKind.bits(offered), epoch: config.epoch)
    }
}

public struct ClusterError: Error, CustomStringConvertible {
    public var description: String
}

/// A value given once, for one waiter: the first `finish` counts, later ones are ignored, and
/// `wait` returns it whether it came before or after.
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiter: CheckedContinuation<Value, Never>?)>((nil, nil))

    func finish(_ value: Value) {
        let waiter = state.withLock { s -> CheckedContinuation<Value, Never>? in
            guard s.value == nil else { return nil }
            s.value = value
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: value)
    }

    func wait() async -> Value {
        await withCheckedContinuation { c in
            let value = state.withLock { s -> Value? in
                if s.value == nil { s.waiter = c }
                return s.value
            }
            if let value { c.resume(returning: value) }
        }
    }
}

/// Resolves once, with the authenticated connection or nil, for whoever waits.
typealias Ready = OneShot<PeerConnection?>
