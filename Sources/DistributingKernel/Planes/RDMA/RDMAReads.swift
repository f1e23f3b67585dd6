import DeviceDrivers
import Infoset
import ServiceKernel
import Synchronization

/// The receiving side of the RDMA plane: a buffer offered by a peer is READ into a block of this
/// node's pool, in chunks, several in flight, straight from the peer's memory by the NICs.
extension RDMAPlane {
    /// Bytes per READ: large enough that posting costs nothing beside the transfer, small enough
    /// that the chunks in flight keep the link busy and progress is seen.
    static let chunk = 1 << 20
    /// READs in flight per buffer (the queue pair lets the device have up to 16 outstanding).
    static let depth = 8
    /// How often the reader tells the sender how far it got, so the sender's call deadline moves
    /// on while a large buffer is being read.
    static let progressInterval = Duration.milliseconds(500)

    func fetch(_ offer: Wire.Offer, length: Int, from peer: String) async -> Result<DataBuffer, Fault> {
        let d: RDMAWire.Descriptor
        do { d = try RDMAWire.descriptor(offer.descriptor, length: length) } catch {
            return .failure(.malformed("an RDMA buffer descriptor is a transfer number, an address and a key, of a buffer that fits in memory: \(error)"))
        }
        let (transfer, address, rkey) = (d.transfer, d.address, d.rkey)
        let (result, bytes) = length == 0 ? (.success(DataBuffer([])), 0) : await read(length, at: address, rkey: rkey, transfer: transfer, from: peer)
        // Done either way: the sender ends the lease now instead of when the call ends.
        send(Self.progressFrame(transfer: transfer, bytes: UInt64(bytes), done: true), to: peer)
        return result
    }

    /// The buffer or why not, and how many of its bytes were read.
    private func read(_ length: Int, at address: UInt64, rkey: UInt32, transfer: UInt64, from peer: String) async -> (Result<DataBuffer, Fault>, Int) {
        let qp: QueuePair
        switch await queuePair(to: peer, connect: false) {
        case .success(let q): qp = q
        case .failure(let fault):
            // The sender lent it through a queue pair this node has ended (it failed here first):
            // a new one replaces the sender's too, for the next buffer.
            reconnect(peer)
            return (.failure(fault), 0)
        }
        let block: BufferPool.Block
        do { block = try pool.block(for: length) } catch {
            state.withLock { $0.count(peer) { $0.failed += 1 } }
            return (.failure(.exhausted(error)), 0)
        }
        let region: MemoryRegion
        do { region = try registrations.region(for: block) } catch {
            pool.give(block)
            return (.failure(.unreachable("pool memory cannot be registered with \(device.name): \(error)")), 0)
        }
        state.withLock { $0.count(peer) { $0.receiving += 1 } }
        let (failure, bytes) = await withCheckedContinuation { c in
            RDMARead(qp: qp, region: region, length: length, address: address, rkey: rkey, completions: completions,
                     landed: { [weak self] n, total, report in
                         self?.state.withLock { $0.count(peer) { $0.bytesReceived += UInt64(n) } }
                         if report { self?.send(Self.progressFrame(transfer: transfer, bytes: UInt64(total), done: false), to: peer) }
                     },
                     finished: { c.resume(returning: ($0, $1)) }).start()
        }
        state.withLock { s in
            s.count(peer) { t in
                t.receiving -= 1
                if failure == nil { t.received += 1 } else { t.failed += 1 }
            }
        }
        if let failure {
            pool.give(block)
            if failure.posted { linkFailed(peer, qp, failure.reason) }
            return (.failure(.unreachable("RDMA READ from \(peer) failed: \(failure)")), bytes)
        }
        return (.success(DataBuffer(landed: block, count: length, pool: pool)), bytes)
    }
}

/// One buffer being READ: keeps `depth` chunks in flight, posting the next from the completion
/// thread as each lands, and finishes once every posted READ has completed — after a failure too,
/// so the block is never given back while the device may still write into it (a failed queue
/// pair flushes what it has posted, so that wait is short).
final class RDMARead: Sendable {
    let qp: QueuePair
    let region: MemoryRegion
    let length: Int
    let address: UInt64
    let rkey: UInt32
    let completions: RDMACompletions
    /// Called as each chunk lands: its bytes, the bytes in so far, and whether it is time to
    /// tell the sender (`RDMAPlane.progressInterval` since the last time).
    let landed: @Sendable (Int, Int, Bool) -> Void
    /// Called once, when nothing is in flight any more: why it failed (nil if it did not) and the bytes read.
    let finished: @Sendable (RDMACompletions.Failure?, Int) -> Void
    private struct State {
        var next = 0
        var outstanding = 0
        var done = 0
        var reported = ContinuousClock.now
        var failure: RDMACompletions.Failure?
    }
    private let state = Mutex(State())

    init(qp: QueuePair, region: MemoryRegion, length: Int, address: UInt64, rkey: UInt32, completions: RDMACompletions,
         landed: @escaping @Sendable (Int, Int, Bool) -> Void, finished: @escaping @Sendable (RDMACompletions.Failure?, Int) -> Void) {
        self.qp = qp
        self.region = region
        self.length = length
        self.address = address
        self.rkey = rkey
        self.completions = completions
        self.landed = landed
        self.finished = finished
    }

    func start() { postMore() }

    /// Posts chunks until `depth` are in flight or none is left. Posting happens outside the
    /// lock: a post that fails completes at once, on this thread.
    private func postMore() {
        while let (offset, n) = state.withLock({ s -> (Int, Int)? in
            guard s.failure == nil, s.next < length, s.outstanding < RDMAPlane.depth else { return nil }
            let n = min(RDMAPlane.chunk, length - s.next)
            defer { s.next += n; s.outstanding += 1 }
            return (s.next, n)
        }) {
            completions.post(on: qp, { [self] id throws(VerbsError) in
                // Cannot overflow: `fetch` took the descriptor only if address + length does not.
                try qp.read(into: region, offset: offset, length: n, remoteAddress: address + UInt64(offset), rkey: rkey, id: id)
            }, then: { [self] failure in completed(n, failure) })
        }
    }

    private func completed(_ n: Int, _ failure: RDMACompletions.Failure?) {
        let (over, progress) = state.withLock { s -> ((RDMACompletions.Failure?, Int)?, (Int, Bool)?) in
            s.outstanding -= 1
            var progress: (Int, Bool)?
            if let failure { s.failure = s.failure ?? failure } else {
                s.done += n
                let now = ContinuousClock.now
                let report = now - s.reported >= RDMAPlane.progressInterval
                if report { s.reported = now }
                progress = (s.done, report)
            }
            guard s.outstanding == 0, s.failure != nil || s.done == length else { return (nil, progress) }
            return ((s.failure, s.done), progress)
        }
        if let (total, report) = progress { landed(n, total, report) }
        if let (failure, bytes) = over { finished(failure, bytes) } else { postMore() }
    }
}
