import ServiceKernel
import Synchronization

/// The sender's end of one AF_XDP transfer: a buffer offered to one peer and pulled by it, sent
/// from the port its PULL came in on as the window (XDPWindow) allows.
final class XDPSending: Sendable {
    let peer: String
    /// The receiver's MAC and the transfer: the sending's key in the plane's table.
    let flow: XDPPlane.Flow
    /// The receiver's MAC as bytes, for every frame's header.
    let receiver: [UInt8]
    let buffer: DataBuffer
    let chunk: Int
    let call: UInt64
    let port: XDPPort
    /// Used under `state`'s lock only.
    let cipher: XDPCipher?
    let started: UInt64

    struct State {
        var window: XDPWindow
        /// When an ACK last moved the transfer on, and when the call's deadline was last pushed.
        var progressed: UInt64
        var armed: UInt64 = 0
    }
    let state: Mutex<State>

    init(peer: String, flow: XDPPlane.Flow, buffer: DataBuffer, chunk: Int, call: UInt64, port: XDPPort, cipher: XDPCipher?, now: UInt64) {
        self.peer = peer
        self.flow = flow
        receiver = flow.address
        self.buffer = buffer
        self.chunk = chunk
        self.call = call
        self.port = port
        self.cipher = cipher
        started = now
        state = Mutex(State(window: XDPWindow(total: (buffer.count + chunk - 1) / chunk), progressed: now))
    }
}

extension XDPPlane {
    /// A PULL: if the transfer is offered to the node asking, with the length it names, in
    /// chunks that fit this node's frames, a sending starts on the port it came in on; else the
    /// receiver is told why not. A PULL again for a sending under way changes nothing.
    func pulled(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, flow: Flow, on port: XDPPort, now: UInt64) {
        guard let export = state.withLock({ $0.offers[h.transfer] }) else {
            return refuse(flow, on: port, cipher: nil, "no transfer \(h.transfer) is offered: its call has ended, or it never was")
        }
        let cipher = export.extra.isEmpty ? nil : XDPCipher(key: export.extra)
        guard let body = open(h, frame, cipher: cipher), let pull = try? XDPWire.pull(body) else { return state.withLock { $0.dropped += 1 } }
        let offering = export.offering
        guard pull.node == offering.peer else {
            return refuse(flow, on: port, cipher: cipher, "transfer \(h.transfer) is offered to another node")
        }
        guard pull.length == UInt64(offering.buffer.count) else {
            return refuse(flow, on: port, cipher: cipher, "transfer \(h.transfer) is \(offering.buffer.count) bytes, not \(pull.length)")
        }
        guard pull.chunk + XDPWire.overhead <= port.maxFrame else {
            return refuse(flow, on: port, cipher: cipher, "chunks of \(pull.chunk) bytes do not fit frames of \(port.maxFrame) bytes on \(interface.name)")
        }
        state.withLock { s in
            guard s.sendings[flow] == nil, s.offers[h.transfer] != nil else { return }
            s.sendings[flow] = XDPSending(peer: offering.peer, flow: flow, buffer: offering.buffer, chunk: pull.chunk,
                                          call: offering.call, port: port, cipher: cipher, now: now)
            s.count(offering.peer) { $0.sending += 1 }
        }
    }

    /// Tells the receiver of `flow` that its transfer will not come, and why (sealed when the
    /// key is known; an unknown transfer's refusal cannot be).
    private func refuse(_ flow: Flow, on port: XDPPort, cipher: XDPCipher?, _ reason: String) {
        let sequence = refusals.wrappingAdd(1, ordering: .relaxed).oldValue
        send(on: port, to: flow.address, .refuse, transfer: flow.transfer, sequence: sequence, body: XDPWire.encode(refusal: reason), cipher: cipher)
    }

    /// An ACK for a sending: the window moves on; the lease ends once every chunk is acknowledged.
    func acknowledged(_ h: XDPWire.Header, _ frame: UnsafeRawBufferPointer, flow: Flow, on port: XDPPort, now: UInt64) {
        guard let sending = state.withLock({ $0.sendings[flow] }) else { return }
        let chunk = sending.chunk, count = sending.buffer.count
        let outcome = sending.state.withLock { st -> (bytes: Int, done: Bool, arm: Bool, window: XDPWindow)? in
            guard let body = open(h, frame, cipher: sending.cipher), let ack = try? XDPWire.ack(body) else { return nil }
            let before = min(st.window.acked * chunk, count)
            guard st.window.ack(cumulative: ack.cumulative, sack: ack.sack, now: now) else { return (0, false, false, st.window) }
            st.progressed = now
            let arm = now >= st.armed + 500_000
            if arm { st.armed = now }
            return (min(st.window.acked * chunk, count) - before, st.window.done, arm, st.window)
        }
        guard let outcome else { return state.withLock { $0.dropped += 1 } }
        if outcome.bytes > 0 { state.withLock { $0.count(sending.peer) { $0.bytesSent += UInt64(outcome.bytes) } } }
        if outcome.done {
            let w = outcome.window, took = Double(now - sending.started) / 1e6
            logger.debug("AF_XDP transfer \(sending.flow.transfer) to \(sending.peer): \(count) bytes in \(took) s, \(w.total) chunks, \(w.retransmitted) sent again, \(w.timeouts) timeouts, round trip \(w.roundTrip) µs")
            // Every byte is there: the lease ends now, not when the call does.
            release([sending.flow.transfer])
        } else {
            // A large buffer that is moving is not a call that timed out.
            if outcome.arm, sending.call != 0 { host?.armDeadline(sending.call) }
            if sending.port !== port { sending.port.wake() }
        }
    }

    /// Sends what the window allows of one sending; true if it could have sent more (the
    /// port had no frame left). A receiver silent past `senderPatience` ends the sending.
    func serve(_ sending: XDPSending, now: UInt64) -> Bool {
        let port = sending.port
        let room = min(port.freeFrames, 64)
        guard room > 0 else { return true }
        let (sent, resent, silent) = sending.buffer.withUnsafeBytes { bytes in
            sending.state.withLock { st -> (Int, Int, Bool) in
                guard now < st.progressed + Self.senderPatience else { return (0, 0, true) }
                let before = st.window.retransmitted
                _ = st.window.expire(now: now)
                let chunks = st.window.take(now: now, max: room)
                for c in chunks {
                    let start = c * sending.chunk, n = min(sending.chunk, bytes.count - start)
                    send(on: port, to: sending.receiver, XDPWire.Header(kind: .data, transfer: sending.flow.transfer, sequence: UInt64(c), length: n), cipher: sending.cipher) {
                        $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[start..<start + n]))
                    }
                }
                return (chunks.count, st.window.retransmitted - before, false)
            }
        }
        if resent > 0 { state.withLock { $0.count(sending.peer) { $0.resent += resent } } }
        if silent {
            logger.warning("AF_XDP transfer \(sending.flow.transfer) to \(sending.peer) given up: no acknowledgement for \(Self.senderPatience / 1_000_000) s")
            state.withLock { s in
                if s.sendings.removeValue(forKey: sending.flow) != nil { s.count(sending.peer) { $0.sending -= 1 } }
            }
        }
        return sent == room
    }
}
