import DeviceDrivers
import ServiceKernel
import Synchronization

/// The receiver's end of one AF_XDP transfer: a block of this node's pool that the sender's
/// DATA frames land in, chunk by chunk, until every chunk is there (XDPCoverage). Its PULLs and
/// ACKs go from the plane's first port.
final class XDPImport: Sendable {
    let peer: String
    let flow: XDPPlane.Flow
    /// The sender's MAC, where PULLs and ACKs go.
    let sender: [UInt8]
    let length: Int
    let chunk: Int
    let block: BufferPool.Block
    let port: XDPPort
    /// Used under `state`'s lock only.
    let cipher: XDPCipher?

    struct State {
        var coverage: XDPCoverage
        /// When a frame of the transfer last arrived, and when a PULL or ACK last went.
        var heard: UInt64
        var asked: UInt64 = 0
        /// Counts the PULLs and ACKs sent: their nonces.
        var sequence: UInt64 = 0
        var ackDue = false
        /// Whole or failed: nothing lands any more. A whole one stays until `lingers` to answer
        /// DATA sent again (its last ACK was lost) with the ACK that ends the sending.
        var over = false
        var lingers: UInt64 = 0
        var waiting: CheckedContinuation<Fault?, Never>?
    }
    let state: Mutex<State>

    init(peer: String, flow: XDPPlane.Flow, length: Int, chunk: Int, block: BufferPool.Block, port: XDPPort, cipher: XDPCipher?,
         now: UInt64, waiting: CheckedContinuation<Fault?, Never>) {
        self.peer = peer
        self.flow = flow
        sender = flow.address
        self.length = length
        self.chunk = chunk
        self.block = block
        self.port = port
        self.cipher = cipher
        state = Mutex(State(coverage: XDPCoverage(total: (length + chunk - 1) / chunk), heard: now, waiting: waiting))
    }
}

extension XDPPlane {
    /// How long a whole import answers DATA sent again.
    static let linger: UInt64 = 5_000_000
    /// How often a receiver that has heard nothing new says where it is (a PULL until the first
    /// chunk, then an ACK): a lost PULL or ACK costs at most this.
    static let keepalive: UInt64 = 100_000

    func fetch(_ offer: Wire.Offer, length: Int, from peer: String) async -> Result<DataBuffer, Fault> {
        guard let d = try? XDPWire.descriptor(offer.descriptor) else {
            return .failure(.malformed("an AF_XDP buffer descriptor is a version, a MAC, a queue, a transfer number and a key"))
        }
        if length == 0 { return .success(DataBuffer([])) }
        guard d.key.isEmpty != sealed else {
            return .failure(.unreachable("\(peer) \(sealed ? "does not seal" : "seals") its AF_XDP frames and this node \(sealed ? "does" : "does not")"))
        }
        let cipher = XDPCipher(key: d.key)
        if sealed && cipher == nil { return .failure(.unreachable("no AES-GCM context for an AF_XDP transfer")) }
        let block: BufferPool.Block
        do { block = try pool.block(for: length) } catch {
            state.withLock { $0.count(peer) { $0.failed += 1 } }
            return .failure(.exhausted(error))
        }
        let flow = Flow(mac: d.mac, transfer: d.transfer), port = ports[0], chunk = self.chunk
        let fault = await withCheckedContinuation { (c: CheckedContinuation<Fault?, Never>) in
            let i = XDPImport(peer: peer, flow: flow, length: length, chunk: chunk, block: block, port: port, cipher: cipher,
                              now: XDPPort.microseconds(), waiting: c)
            let taken = state.withLock { s -> Bool in
                guard s.imports[flow] == nil else { return false }
                s.imports[flow] = i
                s.count(peer) { $0.receiving += 1 }
                return true
            }
            if taken { port.wake() } else { c.resume(returning: .unreachable("transfer \(d.transfer) from \(peer) is already being brought")) }
        }
        if let fault {
            pool.give(block)
            return .failure(fault)
        }
        return .success(DataBuffer(landed: block, count: length, pool: pool))
    }

    /// Ends an import: whole (nil) or failed. Nothing lands in its block after this.
    func finish(_ i: XDPImport, _ fault: Fault?) {
        let waiting = i.state.withLock { st -> CheckedContinuation<Fault?, Never>? in
            guard !st.over else { return nil }
            st.over = true
            st.lingers = XDPPort.microseconds() + Self.linger
            defer { st.waiting = nil }
            return st.waiting
        }
        guard let waiting else { return }
        state.withLock { s in
            s.count(i.peer) { t in
                t.receiving -= 1
                if fault == nil { t.received += 1 } else { t.failed += 1 }
            }
            if fault != nil, s.imports[i.flow] === i { s.imports[i.flow] = nil }
        }
        waiting.resume(returning: fault)
    }

    /// A DATA frame: its payload lands at its chunk's place, once, if it opens.
    func landed(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, flow: Flow, now: UInt64) {
        guard let i = state.withLock({ $0.imports[flow] }) else { return state.withLock { $0.dropped += 1 } }
        let outcome = i.state.withLock { st -> (bytes: Int, whole: Bool)? in
            guard !st.over else {
                // The sender did not hear the last ACK: say it again.
                if st.coverage.whole { st.ackDue = true }
                return (0, false)
            }
            guard h.sequence < UInt64(st.coverage.total) else { return nil }
            let c = Int(h.sequence), start = c * i.chunk
            let n = min(i.chunk, i.length - start)
            guard h.length == n else { return nil }
            if st.coverage.has(c) {
                st.heard = now
                st.ackDue = true
                return (0, false)
            }
            let (body, tag) = XDPWire.body(frame, h, sealed: sealed)
            let place = UnsafeMutableRawBufferPointer(start: i.block.base + start, count: n)
            place.copyMemory(from: body)
            if sealed {
                // A chunk that does not open is not landed: its place is written again when it comes again.
                let header = UnsafeRawBufferPointer(rebasing: frame[XDPWire.ethernetBytes..<XDPWire.ethernetBytes + XDPWire.headerBytes])
                guard i.cipher?.open(h, header: header, body: place, tag: tag) == true else { return nil }
            }
            _ = st.coverage.land(c)
            st.heard = now
            st.ackDue = true
            return (n, st.coverage.whole)
        }
        guard let outcome else { return state.withLock { $0.dropped += 1 } }
        if outcome.bytes > 0 { state.withLock { $0.count(i.peer) { $0.bytesReceived += UInt64(outcome.bytes) } } }
        if outcome.whole { finish(i, nil) }
    }

    /// A REFUSE: the import fails with the sender's reason. On a sealed plane only a REFUSE that
    /// opens under the transfer's key counts; one that does not is dropped (counted, logged at
    /// debug), since any host on the segment can send it. (A sender that does not know the
    /// transfer has no key to seal its REFUSE with: that import faults when it stalls instead.)
    func refused(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, flow: Flow) {
        guard let i = state.withLock({ $0.imports[flow] }) else { return }
        guard let reason = i.state.withLock({ _ in Self.refusal(h, frame, sealed: sealed, cipher: i.cipher) }) else {
            state.withLock { $0.dropped += 1 }
            return logger.debug("a REFUSE of transfer \(flow.transfer) from \(MAC.text(flow.address)) does not open: ignored")
        }
        finish(i, .unreachable("\(i.peer) will not send the buffer by AF_XDP: \(reason)"))
    }

    /// The reason a REFUSE frame gives, or nil if it does not count: on a sealed plane, one that
    /// does not open under the transfer's key; on any, one whose reason is malformed.
    static func refusal(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, sealed: Bool, cipher: XDPCipher?) -> String? {
        open(h, frame, sealed: sealed, cipher: cipher).flatMap { try? XDPWire.refusal($0) }
    }

    /// On the import's port, after each batch: the PULL or ACK it owes, a stall, its end.
    func serve(_ i: XDPImport, now: UInt64) {
        enum Next { case nothing, fail, remove }
        let next = i.state.withLock { st -> Next in
            if st.over {
                if st.ackDue, st.coverage.whole { tell(i, &st, now: now) }
                return now >= st.lingers ? .remove : .nothing
            }
            if now >= st.heard + Self.stall { return .fail }
            if st.ackDue || now >= st.asked + Self.keepalive { tell(i, &st, now: now) }
            return .nothing
        }
        switch next {
        case .nothing: break
        case .fail: finish(i, .unreachable("no AF_XDP frame from \(i.peer) (\(MAC.text(i.flow.address))) for \(Self.stall / 1_000_000) s"))
        case .remove: state.withLock { s in if s.imports[i.flow] === i { s.imports[i.flow] = nil } }
        }
    }

    /// Sends the sender where the import is: a PULL until the first chunk has come, then ACKs.
    private func tell(_ i: XDPImport, _ st: inout XDPImport.State, now: UInt64) {
        let pulling = st.coverage.count == 0 && !st.over
        let body = pulling ? XDPWire.encode(XDPWire.Pull(length: UInt64(i.length), chunk: i.chunk, node: node)) : XDPWire.encode(st.coverage.ack())
        let kind: XDPWire.Kind = pulling ? .pull : .ack
        st.sequence += 1
        guard send(on: i.port, to: i.sender, kind, transfer: i.flow.transfer, sequence: st.sequence, body: body, cipher: i.cipher) else { return }
        st.ackDue = false
        st.asked = now
    }
}
