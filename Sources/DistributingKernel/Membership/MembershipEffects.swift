import Infoset
import NIOCore
import ServiceKernel

/// What membership messages and their effects do to the node: members changed, restarted or gone
/// end what was held with them.
extension NetworkManager {
    /// A membership message from a peer's connection (`peer` is its name), handed to membership's
    /// loop. At most `maxQueuedSWIM` wait there at once: past that, a peer's frames are dropped
    /// (and counted), so no peer can queue work without bound ahead of the failure detector's acks.
    func handleSWIM(_ payload: [UInt8], from peer: String) {
        guard let (from, message) = try? Wire.decodeSWIM(payload), from.name == peer else {
            logger.warning("malformed membership message from \(peer)")
            return
        }
        guard droppedDatagrams.queued.add(1, ordering: .relaxed).newValue <= Self.maxQueuedSWIM else {
            droppedDatagrams.queued.subtract(1, ordering: .relaxed)
            droppedDatagrams.overflowed.add(1, ordering: .relaxed)
            return
        }
        onMembershipLoop { [self] in
            droppedDatagrams.queued.subtract(1, ordering: .relaxed)
            handleSWIM(from: from, message)
        }
    }

    static let maxQueuedSWIM = 1024

    /// A membership message, on membership's loop.
    func handleSWIM(from: Membership.Member, _ message: Membership.Message) {
        let now = self.now
        perform(shell.value.membership.receive(message, from: from.name, address: from.address, now: now))
    }

    /// Carries out what the membership machine asked for, on its loop.
    func perform(_ effects: [Membership.Effect]) {
        if effects.contains(where: { if case .changed = $0 { true } else { false } }) {
            publishMembers(shell.value)
        } else if memberView.withLock({ $0.me }) != shell.value.membership.me {
            // A refutation moves this node's incarnation without changing a member.
            let me = shell.value.membership.me
            memberView.withLock { $0.me = me }
        }
        let me = shell.value.membership.me
        for e in effects {
            switch e {
            case .send(let to, let address, let message):
                let payload = Wire.encode(message, from: me)
                // Probes, acks and gossip are datagrams; a full view (a join's sync) is too large for one.
                if case .sync = message {} else if sendDatagram(payload, to: to, address: address) { continue }
                let frame = Wire.Frame(.swim, payload)
                Task { [weak self] in
                    guard let self, let channel = await self.connection(to: to, address: address) else { return }
                    channel.send(frame)
                }
            case .changed(let m):
                memberChanged(m)
            case .restarted(let m):
                peerRestarted(m.name, epoch: m.epoch, certain: true)
            case .refuted:
                // Declared dead somewhere: our subscriptions there may be gone. Renewing finds out.
                kernel.renewFollows()
            }
        }
    }

    /// Notes the epoch `node` is in; when it is newer than one heard before, the node restarted:
    /// its old self's calls fail, the subscriptions it held here end (its new self subscribes
    /// again, and must not get each notification twice), its transfers end, and it is asked for
    /// its new table, which outranks the old at once (`Epoch`). Each restart is handled once,
    /// however it is heard of first (a HELLO, or membership, which is `certain` it is a restart
    /// even when no HELLO of the old life was seen here). A HELLO is authenticated and fresh, so
    /// one with an *older* epoch is a restart too — a node whose clock went back — and then its
    /// old table is dropped (its new one, numbered lower, would never outrank it) and its
    /// datagrams' replay window starts again from the new epoch.
    func peerRestarted(_ node: String, epoch: UInt64, certain: Bool = false, fromHello: Bool = false) {
        let (restarted, backwards) = state.withLock { s -> (Bool, Bool) in
            let known = s.epochs[node]
            guard known.map({ epoch > $0 || (fromHello && epoch != $0) }) ?? true else { return (false, false) }
            if known == nil, s.epochs.count >= 16_384 { s.epochs = [:] }
            s.epochs[node] = epoch
            let backwards = known.map { epoch < $0 } ?? false
            return (known != nil || certain, backwards)
        }
        if backwards {
            logger.warning("node \(node) restarted with an older epoch than it had (its clock went back)")
            forgetTable(of: node)
        }
        // Its datagrams are of the life its HELLO names, whichever way the clock moved.
        if fromHello { replayWindows.withLock { $0.restart(node, epoch: epoch) } }
        guard restarted else { return }
        logger.notice("node \(node) restarted (epoch \(epoch)): ending what was held for its previous life")
        failPending(on: node, reason: "node \(node) restarted")
        kernel.dropSubscriptions(ofNode: node)
        for p in planes.values { p.peerEnded(node) }
        greet(node)
        // Its new life knows none of the subscriptions we held with its old one.
        kernel.renewFollows(on: node)
    }

    /// Copies membership's view to `memberView`, on membership's loop.
    func publishMembers(_ s: MembershipShell) {
        let view = MemberView(me: s.membership.me, members: s.membership.members)
        memberView.withLock { $0 = view }
    }

    func memberChanged(_ m: Membership.Member) {
        logger.info("member \(m.name) at \(m.address) is \(m.status) (incarnation \(m.incarnation))")
        countChange(m)
        kernel.publish(Message(.update, to: "", body: try? infoset(MemberEntry(m))), from: "/os/cluster")
        switch m.status {
        case .alive:
            // A new or returning member gets our table now rather than at the next exchange,
            // and our subscriptions there are renewed (back from a false death or a partition,
            // it may have dropped them).
            greet(m.name)
            kernel.renewFollows(on: m.name)
        case .suspect:
            break
        case .dead, .left:
            state.withLock { _ = $0.epochs.removeValue(forKey: m.name) }
            // Callers waiting for a connection being opened to it get none.
            let link = links.forget(m.name)
            forgetTable(of: m.name)
            failPending(on: m.name, reason: "node \(m.name) is \(m.status == .dead ? "dead" : "gone")")
            kernel.dropSubscriptions(ofNode: m.name)
            link?.close()
            for p in planes.values { p.peerEnded(m.name) }
            // A node that left is not coming back under this life: what we followed there ends,
            // and each subscriber is told. (A dead one may be a false death: renewals go on.)
            if m.status == .left { Task { await kernel.endFollows(on: m.name) } }
        }
    }
}
