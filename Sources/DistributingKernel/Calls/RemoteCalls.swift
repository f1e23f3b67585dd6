import Infoset
import NIOCore
import ServiceKernel
import Synchronization

/// Remote dispatch: requests out, replies correlated back, deadlines, and faults for every call
/// pending on a peer that dies.
extension NetworkManager {
    public func send(_ m: Message, as principal: Principal) async -> Message {
        guard let target = Self.node(of: m.to) else {
            return .faulted(.unreachable("\(m.to) is not a decos:// URI"), replyingTo: m)
        }
        // The member from membership's published view, and its open connection; neither waits
        // behind membership's own lock. Connecting is the slow path.
        let member = memberView.withLock { $0.members[target] }
        guard let member, member.status <= .suspect else {
            return .faulted(.unreachable("node \(target) is not in the cluster (or is dead)"), replyingTo: m)
        }
        let started = kernel.metrics.enabled ? ContinuousClock.now : nil
        let reply = await call(m, to: target, route: (member.address, links.open(to: target)))
        // Labelled by members only: a node nobody knows is a client's name, of any number.
        if let started { kernel.metrics.remoteCall(peer: target, m.verb, faulted: reply.kind == .fault, took: ContinuousClock.now - started) }
        return reply
    }

    /// Sends a request to a member at the address it has (over `channel` when one is open) and
    /// waits for its reply, its fault, or the deadline.
    private func call(_ m: Message, to target: String, route: (address: String, connection: PeerConnection?)) async -> Message {
        var channel = route.connection
        if channel == nil { channel = await connection(to: target, address: route.address) }
        guard let channel else {
            return .faulted(.unreachable("cannot reach node \(target) at \(route.address)"), replyingTo: m)
        }
        let correlation = correlations.wrappingAdd(1, ordering: .relaxed).oldValue
        // Buffers go on a plane chosen for this peer (after the handshake, which said what it takes).
        var exports: [(lease: Lease, offer: Wire.Offer)] = []
        if !m.buffers.isEmpty {
            switch await export(m.buffers, call: correlation, to: target, expires: nil) {
            case .success(let e): exports = e
            case .failure(let fault): return .faulted(fault, replyingTo: m)
            }
        }
        // One tick added, so the clock's staleness can only make a call wait longer, never shorter.
        let deadline = lastTick.load(ordering: .relaxed) + tickMillis + timeoutMillis
        // Resumed exactly once: `complete` takes the call out of `pending` before resuming it.
        return await withUnsafeContinuation { (c: UnsafeContinuation<Message, Never>) in
            calls.add(correlation, Pending(node: target, continuation: c, deadline: deadline, exports: exports.map(\.lease), request: m))
            if let refused = channel.send(.request, encode: { Wire.encode(m, correlation: correlation, offers: exports.map(\.offer), into: &$0) }) {
                // Refused here, with the reason, rather than by the receiver, which would close the
                // connection and fault every call pending on it.
                let fault: Fault = switch refused {
                case .tooLarge: .tooLarge("\(m.verb.rawValue) to \(m.to): \(refused)")
                case .queueFull: .unreachable("node \(target) is not taking what is sent to it: \(refused)")
                }
                complete(correlation, with: .faulted(fault, replyingTo: m))
            }
        }
    }

    /// Sends a notification; notifications to one node leave in the order they were given.
    public func notify(_ m: Message) {
        guard let target = Self.node(of: m.to),
              let member = memberView.withLock({ $0.members[target] }), member.status <= .suspect else { return }
        // A notification's buffers travel as a request's do: offered to the subscriber's node alone.
        // No call's end withdraws them: they lapse after the request timeout, so a subscriber that
        // never pulls cannot keep them forever.
        let expires = now + timeoutMillis
        lanes.run(OrderKey(lane: .notificationsOut, peer: target)) { [self] in
            var offers: [Wire.Offer] = []
            if !m.buffers.isEmpty {
                if let full = offerRoom(for: m.buffers, to: target) { return logger.warning("a notification to \(m.to) was not sent: \(full.reason)") }
                switch await export(m.buffers, call: 0, to: target, expires: expires) {
                case .success(let e): offers = e.map(\.offer)
                case .failure(let fault): return logger.warning("a notification to \(m.to) was not sent: \(fault.reason)")
                }
            }
            var w = ByteWriter()
            // A notification answers no call: its correlation field carries its number in its subscription.
            Wire.encode(m, correlation: m.sequence, offers: offers, into: &w)
            let frame = Wire.Frame(.notify, w.bytes)
            guard let channel = await connection(to: target, address: member.address) else { return }
            if let refused = channel.send(frame) { logger.warning("a notification to \(m.to) was not sent: \(refused)") }
        }
    }

    /// A fault if offering `buffers` to `peer` would leave more than `limit` bytes (this node's
    /// buffer limit per message) offered to it that only lapsing withdraws: a peer that is sent
    /// replies and notifications with buffers and never pulls them holds at most that much here.
    func offerRoom(for buffers: [BufferRef], to peer: String, limit: Int? = nil) -> Fault? {
        let limit = limit ?? config.maxBufferBytes
        let held = planes.values.reduce(0) { $0 + $1.lapsingBytes(to: peer) }
        let adding = buffers.reduce(0) { $0 + $1.buffer.count }
        guard held + adding > limit else { return nil }
        return Fault(.receiver, "ResourceExhausted", "node \(peer) has not pulled \(held) bytes of buffers offered to it; \(adding) more would pass this node's limit of \(limit)")
    }

    var timeoutMillis: UInt64 { UInt64(config.requestTimeout.nanoseconds / 1_000_000) }
    var tickMillis: UInt64 { 50 }

    /// Restarts a call's deadline. Sending the call's buffers re-arms it chunk by chunk, so the
    /// timeout bounds a stalled call, not a large transfer that is making progress.
    func armDeadline(_ correlation: UInt64) {
        calls.arm(correlation, deadline: now + timeoutMillis)
    }

    /// Ends every call whose deadline has passed with a timeout fault — unless its reply's buffers
    /// are being pulled and bytes from its node arrived since the deadline was armed: then the
    /// deadline bounds a stall, not a large reply that is moving (as chunks sent re-arm a
    /// request's). One sweep for all calls costs less than a timer per call (each timer set and
    /// cancelled from off the event loop is a thread hop).
    func expireCalls(now: UInt64) {
        for (id, p) in calls.expired(at: now) {
            if p.pulling {
                let received = bytesReceived(from: p.node)
                if received > p.progress {
                    calls.arm(id, deadline: now + timeoutMillis, progress: received)
                    continue
                }
            }
            let m = p.request
            complete(id, with: .faulted(.timeout("\(m.to) did not answer \(m.verb.rawValue) within \(Double(timeoutMillis) / 1000) s"), replyingTo: m))
        }
    }

    /// The bytes the data planes have brought from `peer` so far (for any transfer: a pull is
    /// seen to move by its peer's traffic).
    func bytesReceived(from peer: String) -> UInt64 {
        planes.values.reduce(0) { sum, plane in sum + (plane.traffic.first { $0.node == peer }?.bytesReceived ?? 0) }
    }

    /// Ends a pending call exactly once, with `reply`: by its reply, its deadline, or its peer's
    /// death. `from`: the node a reply came from (`CallTable.settle`).
    func complete(_ correlation: UInt64, with reply: Message, from peer: String? = nil) {
        guard let p = calls.settle(correlation, from: peer) else {
            if let peer { logger.debug("dropped a reply from \(peer) to no call of ours to it (correlation \(correlation))") }
            return
        }
        for (kind, leases) in Dictionary(grouping: p.exports, by: \.plane) { planes[kind]?.release(leases.map(\.transfer)) }
        p.continuation.resume(returning: reply)
    }

    /// Faults every call pending on `node` at once.
    func failPending(on node: String, reason: String) {
        for (id, request) in calls.calls(on: node) {
            complete(id, with: .faulted(.unreachable(reason), replyingTo: request))
        }
    }

    static func node(of uri: String) -> String? {
        guard let host = URIManager.host(of: uri), !host.isEmpty else { return nil }
        return host
    }

    // MARK: requests from peers

    /// `backlog`: the connection's requests not yet answered; past its bound the connection stops
    /// reading until they drain (RequestBacklog.swift).
    func handleRequest(_ payload: ByteReader, from peer: String, on channel: PeerConnection, backlog: RequestBacklog) {
        let incoming: Wire.Incoming
        do { incoming = try Wire.decodeMessage(payload) } catch {
            logger.warning("malformed request from \(peer): \(error)")
            return
        }
        // Nothing is allocated for a request's buffers before its service is found, the peer is
        // allowed the verb there, and the sizes are within the limit.
        if !incoming.buffers.isEmpty, let fault = kernel.refusal(incoming.message, as: .peer(peer)) ?? bufferProblem(incoming) {
            return answer(.faulted(fault, replyingTo: incoming.message), correlation: incoming.correlation, to: peer, on: channel)
        }
        // A stopping node takes no new request, so what it owes drains while peers keep calling.
        guard backlog.began() else {
            return answer(.faulted(.stopping(node), replyingTo: incoming.message), correlation: incoming.correlation, to: peer, on: channel)
        }
        guard !incoming.buffers.isEmpty else { return deliver(incoming.message, correlation: incoming.correlation, from: peer, on: channel, backlog: backlog) }
        // Buffers are pulled off the lane: a request waits for its own bytes, not for another's.
        // It joins its lane once they are in, so requests with buffers are handed over in the
        // order their buffers arrived.
        Task {
            var m = incoming.message
            if let fault = await fetchBuffers(incoming, from: peer, into: &m) {
                return answer(.faulted(fault, replyingTo: m), correlation: incoming.correlation, to: peer, on: channel, then: backlog.ended)
            }
            deliver(m, correlation: incoming.correlation, from: peer, on: channel, backlog: backlog)
        }
    }

    /// Hands a request to its service as a local call would: the peer's lane starts one task per
    /// request, in arrival order, and never waits for a handler — one that awaits (a call to
    /// another node that calls back, a slow reply) leaves its service free. Requests must reach
    /// their actor in the order they arrived. Where every task runs on the event loops (the node
    /// binary's executor, Executors.swift), each loop's jobs run first in, first out, so tasks made
    /// in order reach the actor in order and the lane goes straight on. Anywhere else (Swift's own
    /// pool: the tests, a program embedding the kernel) tasks start on several threads and a later
    /// request could overtake, so there the lane waits until each request has its place on the
    /// actor (`entered`) before starting the next — correct everywhere, but about 0.4 of the
    /// pipelined rate, which is why the binary does not pay it.
    func deliver(_ m: Message, correlation: UInt64, from peer: String, on channel: PeerConnection, backlog: RequestBacklog) {
        // A lane per service: a request waiting for a busy service's actor holds up no other service's.
        lanes.run(OrderKey(lane: .requests, peer: peer, to: m.to)) { [self] in
            guard !Self.tasksRunInOrder.load(ordering: .relaxed) else {
                Task {
                    answer(await kernel.send(m, as: .peer(peer)), correlation: correlation, to: peer, on: channel, then: backlog.ended)
                }
                return
            }
            let placed = OneShot<Void>()
            Task {
                let reply = await kernel.send(m, as: .peer(peer), entered: { placed.finish(()) })
                placed.finish(())  // a request that never reached an actor (refused, or answered by the kernel)
                answer(reply, correlation: correlation, to: peer, on: channel, then: backlog.ended)
            }
            await placed.wait()
        }
    }

    /// Set by the node binary's executor (Executors.swift), under which tasks made one after
    /// another on a loop start in that order.
    public static let tasksRunInOrder = Atomic<Bool>(false)

    /// Sends a reply to the call `correlation` from `peer`. Its buffers are offered to the caller's
    /// node as a request's are, on the plane chosen for that peer, and pulled by the caller before
    /// its call ends (`handleReply`). No call's end on this node withdraws them: like a
    /// notification's, they lapse after the request timeout, so a caller that never pulls cannot
    /// keep them. `queued` is called once the reply is queued for the wire (a request is owed
    /// until then: `RequestBacklog`, and a stopping node's drain).
    func answer(_ reply: Message, correlation: UInt64, to peer: String, on channel: PeerConnection, then queued: @escaping @Sendable () -> Void = {}) {
        var reply = reply
        reply.from = kernel.absolute(reply.from)
        guard !reply.buffers.isEmpty else {
            send(reply, offers: [], correlation: correlation, on: channel)
            return queued()
        }
        let expires = now + timeoutMillis
        Task { [self] in
            let offered: Result<[(lease: Lease, offer: Wire.Offer)], Fault>
            if let full = offerRoom(for: reply.buffers, to: peer) { offered = .failure(full) } else {
                offered = await export(reply.buffers, call: 0, to: peer, expires: expires)
            }
            switch offered {
            case .success(let exports): send(reply, offers: exports.map(\.offer), correlation: correlation, on: channel)
            case .failure(let fault):
                // Not dropped in silence: the caller learns its reply had buffers that could not go.
                let ids = reply.buffers.map(\.id).joined(separator: ", ")
                send(Self.turned(reply, into: Fault(.receiver, "BuffersNotSent", "\(reply.from ?? "the service") replied with buffers (\(ids)) that cannot be sent to \(peer): \(fault.reason)")),
                     offers: [], correlation: correlation, on: channel)
            }
            queued()
        }
    }

    private func send(_ reply: Message, offers: [Wire.Offer], correlation: UInt64, on channel: PeerConnection) {
        guard let refused = channel.send(.reply, encode: { Wire.encode(reply, correlation: correlation, offers: offers, into: &$0) }) else { return }
        // The caller still gets an answer: a fault saying why the reply could not go.
        logger.warning("a reply to \(reply.to) was not sent: \(refused)")
        let fault = Self.turned(reply, into: .tooLarge("the reply from \(reply.from ?? "?") was not sent: \(refused)"))
        channel.send(.reply) { Wire.encode(fault, correlation: correlation, offers: [], into: &$0) }
    }

    /// `reply` turned into `fault`, addressed as it was.
    private static func turned(_ reply: Message, into fault: Fault) -> Message {
        var m = reply
        m.kind = .fault
        m.body = nil
        m.buffers = []
        m.fault = fault
        return m
    }

    /// A fault naming the limit when the buffers of a request add up to more than this node takes.
    func bufferProblem(_ incoming: Wire.Incoming) -> Fault? {
        var total = 0
        for b in incoming.buffers {
            let (sum, overflow) = total.addingReportingOverflow(b.length)
            guard !overflow, sum <= config.maxBufferBytes else {
                return .tooLarge("the buffers of this message exceed this node's limit of \(config.maxBufferBytes) bytes per message")
            }
            total = sum
        }
        return nil
    }

    func handleReply(_ payload: ByteReader, from peer: String) {
        guard let incoming = try? Wire.decodeMessage(payload) else {
            logger.warning("malformed reply from \(peer)")
            return
        }
        guard !incoming.buffers.isEmpty else { return complete(incoming.correlation, with: incoming.message, from: peer) }
        // A reply's buffers are pulled only for a call of ours to that peer, once, within this
        // node's limit; the call's deadline starts again, and again while the bytes move
        // (`expireCalls`).
        let deadline = now + timeoutMillis
        let received = bytesReceived(from: peer)
        guard let request = calls.startPulling(incoming.correlation, from: peer, deadline: deadline, progress: received) else {
            return logger.debug("dropped a reply with buffers from \(peer) to no call of ours to it, or to one already answered (correlation \(incoming.correlation))")
        }
        if let problem = bufferProblem(incoming) { return complete(incoming.correlation, with: .faulted(problem, replyingTo: request), from: peer) }
        Task {
            var m = incoming.message
            if let fault = await fetchBuffers(incoming, from: peer, into: &m) { m = .faulted(fault, replyingTo: request) }
            complete(incoming.correlation, with: m, from: peer)
        }
    }

    func handleNotify(_ payload: ByteReader, from peer: String, on channel: PeerConnection) {
        guard let incoming = try? Wire.decodeMessage(payload) else {
            logger.warning("malformed notification from \(peer)")
            return
        }
        lanes.run(OrderKey(lane: .notificationsIn, peer: peer, to: incoming.message.to)) { [self] in
            var m = incoming.message
            m.sequence = incoming.correlation
            // Nothing is fetched for a notification nobody here subscribed to on that node.
            let subscribed = kernel.expectsNotification(m, from: peer)
            if subscribed, !incoming.buffers.isEmpty {
                // Pulled in the lane: a subscriber sees notifications in order, each whole.
                if let problem = bufferProblem(incoming) { return logger.warning("notification from \(peer) refused: \(problem.reason)") }
                if let fault = await fetchBuffers(incoming, from: peer, into: &m) { return logger.warning("notification from \(peer) lost: \(fault.reason)") }
            }
            let delivered = subscribed ? await kernel.deliver(remoteNotification: m, from: peer) : false
            if !delivered {
                var w = ByteWriter()
                w.string(kernel.absolute(incoming.message.to) ?? incoming.message.to)
                channel.send(Wire.Frame(.unsubscribe, w.bytes))
            }
        }
    }

    func handleUnsubscribe(_ payload: [UInt8], from peer: String) {
        var r = ByteReader(payload)
        guard let uri = try? r.string(), Self.node(of: uri) == peer else { return }
        kernel.dropSubscriptions(heldBy: uri)
    }
}

