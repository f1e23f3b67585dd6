import DeviceDrivers
import Infoset
import Logging
import NIOCore
import ServiceKernel
import Synchronization

/// The RDMA data plane: rendezvous by READ, as UCX's get_zcopy. No CPU copies a byte.
///
/// Where a buffer leaves: `export` lends the buffer's pool block (registered once,
/// `RDMARegistrations`) to the receiving peer alone through a type-2 memory window bound on the
/// queue pair to that peer, and the offer carries (transfer, address, rkey). Where it lands:
/// `fetch` (RDMAReads.swift) READs it in chunks, several in flight, into a block of this node's
/// pool, then says so with a DATA_PROGRESS frame; the sender then invalidates the window, and a
/// READ with that rkey fails from then on. The window is also invalidated when the call ends or
/// the peer dies, whichever comes first: the lease is the call.
///
/// One reliable-connected queue pair per peer (RDMAQueuePairs.swift), set up over the control
/// connection; completions arrive on the device's completion thread (`RDMACompletions`). The
/// plane's state is behind its own lock.
final class RDMAPlane: DataPlane {
    let kind = PlaneKind.rdma
    let device: RDMADevice
    let logger: Logger
    let completions: RDMACompletions
    let registrations: RDMARegistrations
    /// Where imports land, and where a buffer made from an array is copied at export: the pool of
    /// the NUMA node of the device's network interface.
    let pool: BufferPool
    /// The network interface the device runs over (RoCE), if known.
    let netdev: String?
    let state = Mutex(State())
    let owner = HostLink()

    /// How an offered buffer is lent to its peer: through a memory window, until the lease ends.
    struct Lent {
        var window: MemoryWindow?
        var rkey: UInt32 = 0
        /// The queue pair the window is bound on (the one the peer reads through).
        var queuePair: QueuePair?
        /// Bytes the peer has said it has read.
        var read: UInt64 = 0
    }
    typealias Export = OfferLedger<Lent>.Entry

    struct State {
        /// Buffers offered to peers, each with the window it is lent through.
        var offers = OfferLedger<Lent>()
        /// The queue pair to each peer, connecting or connected.
        var links: [String: RDMALink] = [:]
        /// Memory windows not bound, for the next export.
        var windows: [MemoryWindow] = []
        var traffic: [String: PeerTraffic] = [:]

        mutating func count(_ peer: String, _ change: (inout PeerTraffic) -> Void) {
            change(&traffic[peer, default: PeerTraffic(node: peer, plane: PlaneKind.rdma.name)])
        }
    }

    init(device: RDMADevice, netdev: String?, pools: BufferPools, logger: Logger) {
        self.device = device
        self.netdev = netdev
        self.logger = logger
        pool = pools.pool(forInterface: netdev)
        completions = RDMACompletions(device: device, logger: logger)
        registrations = RDMARegistrations(device: device, pools: pools)
    }

    /// The plane over the first RDMA device whose port is up (with the static binary's rxe and
    /// mlx5 providers; Soft-RoCE is made by `decos.rxe=`), or nil, with why in the log, if there
    /// is none: then the node offers the other planes.
    static func open(pools: BufferPools, logger: Logger) -> RDMAPlane? {
        let names: [String]
        do { names = try RDMADevice.names() } catch {
            logger.info("no RDMA data plane: \(error)")
            return nil
        }
        for name in names {
            do {
                let device = try RDMADevice(name, waitMilliseconds: 2000)
                let netdev = device.netdev
                logger.info("RDMA data plane on \(name)\(netdev.map { " over \($0)" } ?? "")")
                return RDMAPlane(device: device, netdev: netdev, pools: pools, logger: logger)
            } catch {
                logger.info("RDMA device \(name) cannot carry buffers: \(error)")
            }
        }
        if names.isEmpty { logger.debug("no RDMA device: buffers go on the other planes") }
        return nil
    }


    // MARK: offers

    func export(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) async -> Result<(transfer: UInt64, offer: Wire.Offer), Fault> {
        // The device reads pool memory only: a buffer made from an array is copied into the pool
        // once, here.
        let lent: DataBuffer
        if buffer.block != nil || buffer.count == 0 {
            lent = buffer
        } else {
            do {
                let block = try pool.block(for: buffer.count)
                buffer.withUnsafeBytes { block.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                lent = DataBuffer(landed: block, count: buffer.count, pool: pool)
            } catch { return .failure(.exhausted(error)) }
        }
        var export = Lent()
        if let block = lent.block {
            let region: MemoryRegion
            do { region = try registrations.region(for: block) } catch {
                return .failure(.unreachable("the buffer cannot be registered with \(device.name): \(error)"))
            }
            let qp: QueuePair
            switch await queuePair(to: peer) {
            case .success(let q): qp = q
            case .failure(let fault): return .failure(fault)
            }
            let window: MemoryWindow
            if let w = state.withLock({ $0.windows.popLast() }) { window = w } else {
                do { window = try MemoryWindow(device) } catch {
                    return .failure(.unreachable("no memory window on \(device.name): \(error)"))
                }
            }
            // Bound before the offer leaves: the peer's first READ may arrive before any later
            // work request of ours would have run.
            let bound = BoundKey()
            let length = lent.count
            if let failure = await completions.run(on: qp, { id throws(VerbsError) in
                bound.rkey.store(try qp.bind(window, region: region, length: length, id: id), ordering: .relaxed)
            }) {
                // The window's state is unknown after a failed bind: it is not reused.
                if failure.posted { linkFailed(peer, qp, "binding a memory window failed: \(failure)") }
                return .failure(.unreachable("the buffer cannot be lent to \(peer): \(failure)"))
            }
            export.window = window
            export.rkey = bound.rkey.load(ordering: .relaxed)
            export.queuePair = qp
        }
        let transfer = state.withLock { $0.offers.offer(Offering(buffer: lent, call: call, peer: peer, expires: expires), export) }
        let descriptor = RDMAWire.Descriptor(transfer: transfer, address: UInt64(UInt(bitPattern: lent.block?.base)), rkey: export.rkey)
        return .success((transfer, Wire.Offer(plane: kind.rawValue, descriptor: RDMAWire.encode(descriptor))))
    }

    /// Ends leases: each window is invalidated, and only once that has completed does the buffer
    /// go (back to the pool, if nothing else holds it) — a READ that raced the end reads the old
    /// bytes or fails, never memory that serves another buffer.
    func release(_ transfers: [UInt64]) {
        let ended = state.withLock { $0.offers.withdraw(transfers) }
        for e in ended { endLease(e.entry) }
    }

    private func endLease(_ e: Export) {
        guard let window = e.extra.window, let qp = e.extra.queuePair else { return }
        let rkey = e.extra.rkey
        completions.post(on: qp, { id throws(VerbsError) in try qp.invalidate(rkey, id: id) }) { [weak self] failure in
            // Holds the buffer until here. An invalidation that failed failed its queue pair,
            // which ended all access through it; one that could not even be posted leaves the
            // window readable, so the queue pair is ended here, before the buffer goes. Either
            // way the window is not reused.
            if let failure, !failure.posted { self?.linkFailed(e.offering.peer, qp, "a memory window could not be invalidated: \(failure)") }
            withExtendedLifetime(e.offering.buffer) {}
            if failure == nil { self?.state.withLock { $0.windows.append(window) } }
        }
    }

    func tick(now: UInt64) {
        let lapsed = state.withLock { $0.offers.withdrawLapsed(at: now) }
        for e in lapsed { endLease(e.entry) }
        expireConnects(now: now)
    }

    func peerEnded(_ peer: String) {
        let leases = state.withLock { $0.offers.transfers(to: peer) }
        release(leases)
        closeLink(to: peer, reason: "node \(peer) is gone")
    }

    func stop() {
        for peer in state.withLock({ Array($0.links.keys) }) { closeLink(to: peer, reason: "this node stops") }
        completions.stop()
    }

    func lapsingBytes(to peer: String) -> Int { state.withLock { $0.offers.lapsingBytes(to: peer) } }

    var traffic: [PeerTraffic] {
        state.withLock { s in
            var t = s.traffic
            s.offers.countOffers(into: &t, plane: kind)
            return t.keys.sorted().map { t[$0]! }
        }
    }

    // MARK: the receiver's word

    /// A DATA_PROGRESS from `peer`: it has read so many bytes of a buffer lent to it (the call's
    /// deadline moves on: a large buffer being read is not a call that stalled), or it is done
    /// with it, and the lease ends now rather than when the call does.
    func progress(_ payload: [UInt8], from peer: String) {
        let p: RDMAWire.Progress
        do { p = try RDMAWire.progress(payload) } catch {
            return logger.warning("malformed DATA_PROGRESS from \(peer): \(error)")
        }
        // Only the peer the buffer was lent to speaks for it, and never for more than its bytes.
        let call = state.withLock { s -> UInt64? in
            guard let e = s.offers.offered(p.transfer, to: peer) else { return nil }
            let bytes = min(p.bytes, UInt64(e.offering.buffer.count))
            let more = bytes > e.extra.read ? bytes - e.extra.read : 0
            s.offers[p.transfer]!.extra.read = max(e.extra.read, bytes)
            s.count(peer) { $0.bytesSent += more }
            return e.offering.call
        }
        guard let call else { return }
        if p.done { release([p.transfer]) } else if call != 0 { host?.armDeadline(call) }
    }
}

extension RDMAPlane {
    /// The frame a receiver sends about a buffer it reads: bytes so far, and whether it is done.
    static func progressFrame(transfer: UInt64, bytes: UInt64, done: Bool) -> Wire.Frame {
        Wire.Frame(.dataProgress, RDMAWire.encode(RDMAWire.Progress(transfer: transfer, bytes: bytes, done: done)))
    }
}

/// Where a bind's completion handler leaves the window's key for the export that waits on it.
private final class BoundKey: Sendable {
    let rkey = Atomic<UInt32>(0)
}
