import Addresses
import DeviceDrivers
import Infoset
import Logging
import ProcessKernel
import ServiceKernel
import Synchronization

/// The AF_XDP data plane: buffers move as raw Ethernet frames of our own EtherType, which an XDP
/// program steers to AF_XDP sockets (one per receive queue of the interface the cluster listens
/// on) while every other frame goes to the kernel's stack as before. A reliable bulk transfer of
/// our own runs over them (XDPWindow: window, SACK, retransmission; XDPCoverage).
///
/// Where a buffer leaves: `export` offers it under a fresh transfer number and key; the
/// receiver's PULL arrives on a port (XDPSending.swift), which streams the buffer's chunks as the
/// window allows until the receiver's ACKs cover it. Where it lands: `fetch` (XDPImports.swift)
/// sends the PULL and lands each DATA frame's payload at its place in a block of this node's pool.
///
/// Between nodes on one Ethernet segment only (frames are not routed): the descriptor names the
/// sender's MAC, and a peer whose address is not on the interface's subnet gets its buffers on
/// the next plane both offer. The plane's state is behind its own lock; each transfer's behind its own.
final class XDPPlane: DataPlane {
    let kind = PlaneKind.xdp
    let interface: NetworkInterface
    let node: String
    let logger: Logger
    /// Whether frames are sealed: as the cluster's frames are (`ClusterConfig.encrypt`).
    let sealed: Bool
    /// Where imports land: the pool of the interface's NUMA node (its ports' UMEMs come from it too).
    let pool: BufferPool
    /// The interface's subnets when the plane opened (the cluster's address is on one): asked on
    /// every export, so read once rather than per message.
    let subnets: [NetworkInterface.Subnet]
    let ports: [XDPPort]
    let state = Mutex(State())
    let owner = HostLink()
    /// Counts REFUSE frames: their nonces.
    let refusals = Atomic<UInt64>(0)
    /// How long a receiver waits for any frame of a transfer before it faults.
    static let stall: UInt64 = 5_000_000
    /// How long a sender goes on without any ACK progress before it gives the transfer up.
    static let senderPatience: UInt64 = 10_000_000

    /// A transfer's flow: the other end's MAC (its six bytes in a number, so the frame path hashes
    /// no array) and the sender's transfer number.
    struct Flow: Hashable {
        var mac: UInt64
        var transfer: UInt64

        init(mac: UInt64, transfer: UInt64) {
            self.mac = mac
            self.transfer = transfer
        }

        init(mac bytes: [UInt8], transfer: UInt64) {
            self.init(mac: bytes.reduce(0) { $0 << 8 | UInt64($1) }, transfer: transfer)
        }

        /// The MAC's six bytes.
        var address: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: mac >> (40 - 8 * $0)) } }
    }

    struct State {
        /// Buffers offered to peers, each with the key its frames are sealed under.
        var offers = OfferLedger<[UInt8]>()
        var imports: [Flow: XDPImport] = [:]
        var sendings: [Flow: XDPSending] = [:]
        var traffic: [String: PeerTraffic] = [:]
        /// Frames of ours that failed a check (malformed, unknown, not opening).
        var dropped = 0

        mutating func count(_ peer: String, _ change: (inout PeerTraffic) -> Void) {
            change(&traffic[peer, default: PeerTraffic(node: peer, plane: PlaneKind.xdp.name)])
        }
    }

    private init(interface: NetworkInterface, ports: [XDPPort], node: String, sealed: Bool, pool: BufferPool, logger: Logger) {
        self.interface = interface
        self.ports = ports
        subnets = interface.subnets()
        self.node = node
        self.sealed = sealed
        self.pool = pool
        self.logger = logger
    }

    /// The plane on the interface holding `address` (the cluster's listen or advertised host),
    /// or nil, with why in the log: then the node offers the other planes. Needs the address of
    /// one interface that is not loopback, and CAP_BPF and CAP_NET_RAW (root).
    static func open(address: String, node: String, sealed: Bool, pools: BufferPools, logger: Logger) -> XDPPlane? {
        guard let name = NetworkInterface.holding(address: address), let interface = NetworkInterface(name), !interface.isLoopback else {
            logger.info("no AF_XDP data plane: the cluster address \(address) is not one Ethernet interface's (listen on one to move buffers by AF_XDP)")
            return nil
        }
        let queues = min(interface.receiveQueues, 8)
        let pool = pools.pool(forInterface: name)
        do {
            let filter = try XDPFilter(interface: name, ethertype: XDPWire.etherType, queues: max(queues, 1))
            let ports = try (0..<queues).map { q in try XDPPort(filter: filter, interface: interface, queue: q, pool: pool) }
            let plane = XDPPlane(interface: interface, ports: ports, node: node, sealed: sealed, pool: pool, logger: logger)
            for port in plane.ports {
                port.run(receive: { [weak plane] port, frame, now in plane?.receive(frame, on: port, now: now) },
                         serve: { [weak plane] port, now in plane?.serve(port, now: now) ?? (false, false) })
            }
            let copying = ports.allSatisfy(\.socket.zeroCopy) ? "zero-copy" : "copy mode"
            logger.info("AF_XDP data plane on \(name) (\(filter.mode) XDP, \(copying), \(queues) queue\(queues == 1 ? "" : "s"), MTU \(interface.mtu))")
            return plane
        } catch {
            logger.info("no AF_XDP data plane on \(name): \(error)")
            return nil
        }
    }

    /// Only a peer on the interface's own subnet: its frames reach it without a router.
    func reaches(_ address: String) -> Bool {
        guard let host = parseHostPort(address)?.host else { return false }
        return subnets.contains { $0.contains(host) }
    }

    /// The bytes of payload a frame carries on this interface.
    var chunk: Int { (ports.first?.maxFrame ?? 1514) - XDPWire.overhead }

    // MARK: offers

    /// The offer names this node's MAC, the transfer and its key. (Its queue is 0: the NIC, not
    /// this node, picks the queue a PULL arrives on, and the sending stays on that queue's port.)
    func export(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) async -> Result<(transfer: UInt64, offer: Wire.Offer), Fault> {
        let key = sealed ? XDPCipher.key() : []
        let transfer = state.withLock { $0.offers.offer(Offering(buffer: buffer, call: call, peer: peer, expires: expires), key) }
        let d = XDPWire.Descriptor(mac: interface.mac, queue: 0, transfer: transfer, key: key)
        return .success((transfer, Wire.Offer(plane: kind.rawValue, descriptor: XDPWire.encode(d))))
    }

    /// Ends leases: the offers go, and so does any sending of them.
    func release(_ transfers: [UInt64]) {
        let ended = Set(transfers)
        state.withLock { s in
            _ = s.offers.withdraw(transfers)
            for (flow, sending) in s.sendings where ended.contains(flow.transfer) {
                s.sendings[flow] = nil
                s.count(sending.peer) { $0.sending -= 1 }
            }
        }
    }

    func tick(now: UInt64) {
        let lapsed = state.withLock { $0.offers.withdrawLapsed(at: now) }
        if !lapsed.isEmpty { release(lapsed.map(\.transfer)) }
    }

    func peerEnded(_ peer: String) {
        release(state.withLock { $0.offers.transfers(to: peer) })
        for i in state.withLock({ s in s.imports.values.filter { $0.peer == peer } }) {
            finish(i, .unreachable("node \(peer) is gone"))
        }
    }

    func stop() {
        for port in ports { port.stop() }
        for i in state.withLock({ Array($0.imports.values) }) { finish(i, .unreachable("this node stops")) }
    }

    func lapsingBytes(to peer: String) -> Int { state.withLock { $0.offers.lapsingBytes(to: peer) } }

    var traffic: [PeerTraffic] {
        state.withLock { s in
            var t = s.traffic
            s.offers.countOffers(into: &t, plane: kind)
            return t.keys.sorted().map { t[$0]! }
        }
    }

    // MARK: the ports' work

    /// A frame of ours arrived on `port`.
    func receive(_ frame: UnsafeRawBufferPointer, on port: XDPPort, now: UInt64) {
        guard let (h, source) = XDPWire.header(frame, sealed: sealed) else { return state.withLock { $0.dropped += 1 } }
        let flow = Flow(mac: source, transfer: h.transfer)
        switch h.kind {
        case .pull: pulled(h, frame, flow: flow, on: port, now: now)
        case .ack: acknowledged(h, frame, flow: flow, on: port, now: now)
        case .data: landed(h, frame, flow: flow, now: now)
        case .refuse: refused(h, frame, flow: flow)
        }
    }

    /// After each batch of frames: what this port's transfers have to send now. Returns whether
    /// there is more to send at once, and whether any transfer is under way.
    func serve(_ port: XDPPort, now: UInt64) -> (more: Bool, busy: Bool) {
        let (imports, sendings) = state.withLock { s in
            (s.imports.values.filter { $0.port === port }, s.sendings.values.filter { $0.port === port })
        }
        for i in imports { serve(i, now: now) }
        var more = false
        for s in sendings where serve(s, now: now) { more = true }
        return (more, !imports.isEmpty || !sendings.isEmpty)
    }

    /// Builds one frame on `port`: headers, then `fill` writes the body; sealed when the plane
    /// seals. False when the port has no frame free.
    @discardableResult
    func send(on port: XDPPort, to mac: [UInt8], _ h: XDPWire.Header, cipher: XDPCipher?, fill: (UnsafeMutableRawBufferPointer) -> Void) -> Bool {
        port.send { frame in
            XDPWire.writeHeaders(frame, to: mac, from: interface.mac, h)
            let start = XDPWire.ethernetBytes + XDPWire.headerBytes
            fill(UnsafeMutableRawBufferPointer(rebasing: frame[start..<start + h.length]))
            guard sealed else { return start + h.length }
            // Without the key (a refusal of a transfer unknown here) the tag is zeros: it will not open.
            if let cipher { cipher.seal(frame, h) } else { UnsafeMutableRawBufferPointer(rebasing: frame[(start + h.length)...].prefix(XDPWire.tagBytes)).initializeMemory(as: UInt8.self, repeating: 0) }
            return start + h.length + XDPWire.tagBytes
        }
    }

    /// A small frame whose body is `body`.
    @discardableResult
    func send(on port: XDPPort, to mac: [UInt8], _ kind: XDPWire.Kind, transfer: UInt64, sequence: UInt64, body: [UInt8], cipher: XDPCipher?) -> Bool {
        send(on: port, to: mac, XDPWire.Header(kind: kind, transfer: transfer, sequence: sequence, length: body.count), cipher: cipher) {
            $0.copyBytes(from: body)
        }
    }

    /// Opens a control frame's body (in place, in the receive frame): its bytes, or nil if it
    /// does not open. Unsealed planes take bodies as they come.
    func open(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, cipher: XDPCipher?) -> [UInt8]? {
        Self.open(h, frame, sealed: sealed, cipher: cipher)
    }

    /// `open`, for a plane that seals its frames or not.
    static func open(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, sealed: Bool, cipher: XDPCipher?) -> [UInt8]? {
        let (body, tag) = XDPWire.body(frame, h, sealed: sealed)
        guard sealed else { return Array(body) }
        guard let cipher else { return nil }
        // The receive frame is this port's UMEM, ours to write until it is given back.
        let writable = UnsafeMutableRawBufferPointer(mutating: body)
        let header = UnsafeRawBufferPointer(rebasing: frame[XDPWire.ethernetBytes..<XDPWire.ethernetBytes + XDPWire.headerBytes])
        return cipher.open(h, header: header, body: writable, tag: tag) ? Array(body) : nil
    }
}
