import CVerbs
import DeviceDrivers
import Infoset
import NIOCore
import ServiceKernel

/// The queue pair to one peer: connecting (this node sent CONNECT and waits for ACCEPT) or connected.
struct RDMALink {
    var queuePair: QueuePair
    var connected: Bool
    /// Who waits for it to connect.
    var waiters: [CheckedContinuation<Result<QueuePair, Fault>, Never>] = []
    /// When this node sent its CONNECT: it gives up `connectTimeout` later.
    var since: UInt64
}

/// Setting up the one reliable-connected queue pair per peer, over the (authenticated, sealed)
/// control connection: the side that needs it first sends CONNECT with its endpoint (QPN, PSN,
/// GID); the other makes its own queue pair, connects it to that endpoint and answers ACCEPT with
/// its endpoint and the QPN it accepted. When both send CONNECT at once, the node whose name sorts
/// first wins: the other drops its own attempt and accepts. A CONNECT for a peer this node is
/// already connected to means the peer rebuilt its side (its queue pair failed, or it restarted):
/// the old one is ended and replaced.
extension RDMAPlane {
    /// Milliseconds to wait for an ACCEPT.
    static let connectTimeout: UInt64 = 5000

    /// The connected queue pair to `peer`. With `connect`, one is set up if there is none;
    /// without, only one connected or connecting is waited for (a buffer offered to this node
    /// was lent through a queue pair its sender set up first).
    func queuePair(to peer: String, connect: Bool = true) async -> Result<QueuePair, Fault> {
        enum Step { case ready(QueuePair), wait, send(QueuePair), fail(Fault) }
        let now = self.now
        return await withCheckedContinuation { c in
            let step = state.withLock { s -> Step in
                if let link = s.links[peer] {
                    if link.connected { return .ready(link.queuePair) }
                    s.links[peer]!.waiters.append(c)
                    return .wait
                }
                guard connect else { return .fail(.unreachable("no RDMA queue pair to \(peer): the buffer was not lent through one")) }
                do {
                    let qp = try QueuePair(device)
                    s.links[peer] = RDMALink(queuePair: qp, connected: false, waiters: [c], since: now)
                    return .send(qp)
                } catch {
                    return .fail(.unreachable("no RDMA queue pair on \(device.name): \(error)"))
                }
            }
            switch step {
            case .ready(let qp): c.resume(returning: .success(qp))
            case .wait: break
            case .fail(let fault): c.resume(returning: .failure(fault))
            case .send(let qp):
                send(Wire.Frame(.rdmaConnect, RDMAWire.connect(qp.endpoint)), to: peer)
            }
        }
    }

    /// A CONNECT from `peer`: connect a queue pair of ours to its endpoint and ACCEPT on `channel`.
    func connectRequested(_ payload: [UInt8], from peer: String, on channel: PeerConnection) {
        let remote: dv_endpoint
        do { remote = try RDMAWire.decodeConnect(payload) } catch {
            return logger.warning("malformed RDMA CONNECT from \(peer): \(error)")
        }
        let me = host?.node ?? ""
        enum Step { case ignore, accepted(QueuePair), failed(String) }
        var waiters: [CheckedContinuation<Result<QueuePair, Fault>, Never>] = []
        var old: QueuePair?
        let step = state.withLock { s -> Step in
            if let link = s.links[peer] {
                // Both asked at once: the first name's CONNECT stands, and the peer accepts it.
                if !link.connected && me < peer { return .ignore }
                waiters = link.waiters
                old = link.queuePair
            }
            do {
                let qp = try QueuePair(device)
                try qp.connect(to: remote)
                s.links[peer] = RDMALink(queuePair: qp, connected: true, since: 0)
                return .accepted(qp)
            } catch {
                s.links[peer] = nil
                return .failed("\(error)")
            }
        }
        old?.fail()
        switch step {
        case .ignore: return
        case .accepted(let qp):
            channel.send(Wire.Frame(.rdmaAccept, RDMAWire.accept(qp.endpoint, answering: remote.qpn)))
            for c in waiters { c.resume(returning: .success(qp)) }
        case .failed(let why):
            logger.warning("cannot accept RDMA CONNECT from \(peer): \(why)")
            for c in waiters { c.resume(returning: .failure(.unreachable("no RDMA queue pair to \(peer): \(why)"))) }
        }
    }

    /// An ACCEPT from `peer`: our queue pair whose QPN it names connects to its endpoint.
    func accepted(_ payload: [UInt8], from peer: String) {
        let remote: dv_endpoint, ours: UInt32
        do { (remote, ours) = try RDMAWire.decodeAccept(payload) } catch {
            return logger.warning("malformed RDMA ACCEPT from \(peer): \(error)")
        }
        var waiters: [CheckedContinuation<Result<QueuePair, Fault>, Never>] = []
        let outcome = state.withLock { s -> Result<QueuePair, Fault>? in
            // An answer to a CONNECT given up on, or replaced, is stale.
            guard let link = s.links[peer], !link.connected, link.queuePair.number == ours else { return nil }
            waiters = link.waiters
            do {
                try link.queuePair.connect(to: remote)
                s.links[peer] = RDMALink(queuePair: link.queuePair, connected: true, since: 0)
                return .success(link.queuePair)
            } catch {
                s.links[peer] = nil
                return .failure(.unreachable("cannot connect an RDMA queue pair to \(peer): \(error)"))
            }
        }
        guard let outcome else { return }
        if case .failure(let f) = outcome { logger.warning("\(f.reason)") }
        for c in waiters { c.resume(returning: outcome) }
    }

    /// Gives up on CONNECTs not accepted in time.
    func expireConnects(now: UInt64) {
        let late = state.withLock { s -> [(String, RDMALink)] in
            let late = s.links.filter { !$0.value.connected && $0.value.since + Self.connectTimeout <= now }
            for (peer, _) in late { s.links[peer] = nil }
            return late.map { ($0.key, $0.value) }
        }
        for (peer, link) in late {
            logger.warning("node \(peer) did not accept an RDMA connection within \(Self.connectTimeout) ms")
            link.queuePair.fail()
            for c in link.waiters { c.resume(returning: .failure(.unreachable("node \(peer) did not accept an RDMA connection within \(Self.connectTimeout / 1000) s"))) }
        }
    }

    /// A work request on the queue pair to `peer` failed, so the queue pair did (RC queue pairs
    /// go to the error state on any failure): it is ended (again, if it was already replaced: ending
    /// is idempotent) and a new one set up at once — the peer's side of the old one may look
    /// healthy to it, and its CONNECT-from-a-connected-peer rule replaces it.
    func linkFailed(_ peer: String, _ qp: QueuePair, _ why: String) {
        let current = state.withLock { s -> Bool in
            guard s.links[peer]?.queuePair === qp else { return false }
            s.links[peer] = nil
            return true
        }
        qp.fail()
        guard current else { return }
        logger.warning("RDMA queue pair to \(peer) failed (\(why)); setting up another")
        reconnect(peer)
    }

    /// Sets up a queue pair to `peer` in the background, so the next buffer finds it ready.
    func reconnect(_ peer: String) {
        Task { _ = await queuePair(to: peer) }
    }

    /// Ends the queue pair to `peer`: what is posted on it completes now, flushed with an error.
    func closeLink(to peer: String, reason: String) {
        guard let link = state.withLock({ $0.links.removeValue(forKey: peer) }) else { return }
        link.queuePair.fail()
        for c in link.waiters { c.resume(returning: .failure(.unreachable("no RDMA queue pair to \(peer): \(reason)"))) }
    }

    /// Sends a control frame to `peer` on the connection this node opened to it.
    func send(_ frame: Wire.Frame, to peer: String) {
        host?.sendControl(frame, to: peer)
    }
}
