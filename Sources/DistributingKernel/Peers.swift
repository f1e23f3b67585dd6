import Infoset
import NIOCore
import ServiceKernel

/// Frames from authenticated peers, membership effects, and the shared namespace.
extension NetworkManager {
    func authenticated(_ channel: any Channel, peer: Handshake.Hello, role: Handshake.Role, outbound: Bool) {
        logger.debug("authenticated \(peer.node) (\(role)) \(outbound ? "outbound" : "inbound")")
        // Where it said it listens: a peer may call before membership has told this node about it.
        state.withLock { s in
            s.helloAddresses[peer.node] = peer.address
            if role == .control { s.helloPlanes[peer.node] = peer.planes }
        }
        // A peer that says it is in a newer life restarted: before anything it sends on this
        // connection is taken, what was held for its old self ends.
        peerRestarted(peer.node, epoch: peer.epoch, fromHello: true)
        guard outbound else { return }
        let ready = state.withLock { s -> Ready? in
            // A connection opened by address (a seed) is known by name from now on.
            s.links[peer.node, default: Link()].channel = channel
            return s.handshakes.removeValue(forKey: ObjectIdentifier(channel))
        }
        ready?.finish(channel)
    }

    func closed(_ channel: any Channel, peer: String, role: Handshake.Role) {
        let wasOurs = state.withLock { s -> Bool in
            guard let c = s.links[peer]?.channel, c === channel else { return false }
            s.links[peer]?.channel = nil
            return true
        }
        // Replies come back on the connection the requests went out on: once it is gone, calls
        // pending on that peer cannot be answered, so they fault now rather than at their deadline.
        if wasOurs && role == .control { failPending(on: peer, reason: "connection to node \(peer) lost") }
    }

    func received(_ frame: Wire.Frame, from peer: String, role: Handshake.Role, on channel: any Channel, backlog: RequestBacklog) {
        switch frame.known {
        case .request: handleRequest(frame.reader, from: peer, on: channel, backlog: backlog)
        case .reply: handleReply(frame.reader, from: peer)
        case .notify: handleNotify(frame.reader, from: peer, on: channel)
        case .unsubscribe: handleUnsubscribe(frame.payload, from: peer)
        case .swim: handleSWIM(frame.payload, from: peer)
        case .directory: handleDirectory(frame.payload, from: peer, on: channel)
        case .dataPull: tcp.send(pull: frame.payload, from: peer, on: channel)
        case .dataChunk: break  // chunks are read by a DataLink, never from an event loop's connection
        case .rdmaConnect:
            guard let rdma else { return logger.warning("node \(peer) asked for an RDMA queue pair, and this node offers no RDMA") }
            rdma.connectRequested(frame.payload, from: peer, on: channel)
        case .rdmaAccept: rdma?.accepted(frame.payload, from: peer)
        case .dataProgress: rdma?.progress(frame.payload, from: peer)
        case .error:
            var r = ByteReader(frame.payload)
            logger.warning("peer \(peer) reported: \((try? r.string()) ?? "?")")
        case .hello, .auth, .sealed:  // a handshake frame after the handshake; a SEALED frame inside another, or unasked for
            channel.close(promise: nil)
        case nil:
            if frame.type & Wire.FrameType.optionalBit == 0 {
                logger.warning("peer \(peer) sent unknown frame type \(frame.type); closing")
                channel.close(promise: nil)
            }
        }
    }

    // MARK: membership

    /// A membership message from a peer's connection (`peer` is its name) or from a datagram (nil).
    func handleSWIM(_ payload: [UInt8], from peer: String) {
        guard let (from, message) = try? Wire.decodeSWIM(payload), from.name == peer else {
            logger.warning("malformed membership message from \(peer)")
            return
        }
        handleSWIM(from: from, message)
    }

    func handleSWIM(from: Membership.Member, _ message: Membership.Message) {
        let now = self.now
        perform(state.withLock { $0.membership.receive(message, from: from.name, address: from.address, now: now) })
    }

    /// Carries out what the membership machine asked for.
    func perform(_ effects: [Membership.Effect]) {
        for e in effects {
            switch e {
            case .send(let to, let address, let message):
                let me = state.withLock { $0.membership.me }
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
            if backwards { s.tables[node] = nil }
            return (known != nil || certain, backwards)
        }
        if backwards { logger.warning("node \(node) restarted with an older epoch than it had (its clock went back)") }
        // Its datagrams are of the life its HELLO names, whichever way the clock moved.
        if fromHello { replayWindows.withLock { $0.restart(node, epoch: epoch) } }
        guard restarted else { return }
        logger.notice("node \(node) restarted (epoch \(epoch)): ending what was held for its previous life")
        failPending(on: node, reason: "node \(node) restarted")
        kernel.dropSubscriptions(ofNode: node)
        for p in planes.values { p.peerEnded(node) }
        if let address = address(of: node) { sendDigest(to: node, address: address, reply: true) }
        // Its new life knows none of the subscriptions we held with its old one.
        kernel.renewFollows(on: node)
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
            sendDigest(to: m.name, address: m.address, reply: true)
            kernel.renewFollows(on: m.name)
        case .suspect:
            break
        case .dead, .left:
            let (table, link) = state.withLock { s -> (Table?, Link?) in
                let t = s.tables.removeValue(forKey: m.name)
                s.helloAddresses[m.name] = nil
                s.helloPlanes[m.name] = nil
                s.epochs[m.name] = nil
                return (t, s.links.removeValue(forKey: m.name))
            }
            // Callers waiting for a connection being opened to it get none.
            for w in link?.waiters ?? [] { w.resume(returning: nil) }
            for e in table?.entries ?? [] { kernel.publish(Message(.delete, to: "", body: try? infoset(e)), from: "/directory") }
            failPending(on: m.name, reason: "node \(m.name) is \(m.status == .dead ? "dead" : "gone")")
            kernel.dropSubscriptions(ofNode: m.name)
            link?.channel?.close(promise: nil)
            for p in planes.values { p.peerEnded(m.name) }
            // A node that left is not coming back under this life: what we followed there ends,
            // and each subscriber is told. (A dead one may be a false death: renewals go on.)
            if m.status == .left { Task { await kernel.endFollows(on: m.name) } }
        }
    }

    // MARK: the shared namespace

    /// Entries of the other nodes this node knows, for `/directory`.
    public var remoteEntries: [DirectoryEntry] {
        state.withLock { s in s.tables.keys.sorted().flatMap { s.tables[$0]!.entries } }
    }

    func localTableChanged() {
        let (version, peers) = state.withLock { s -> (UInt64, [Membership.Member]) in
            s.localVersion += 1
            return (s.localVersion, s.membership.live)
        }
        let frame = tableFrame(node: node, version: version, entries: kernel.uris.entries)
        for p in peers { sendFrame(frame, to: p.name, address: p.address) }
    }

    /// Every sync interval: a summary (a hash of every table's version) to one random peer. Equal
    /// summaries, the usual case, end the exchange in 17 bytes; a peer whose summary differs answers
    /// with its full digest. Each side then sends its own table if the other's is older, and asks
    /// the owner of any other table the peer has newer: a node's table is taken from that node
    /// alone, so no member can speak for another (or freeze another's table with a huge version).
    func antiEntropy() {
        guard let peer = state.withLock({ s -> Membership.Member? in s.membership.live.filter { $0.status == .alive }.randomElement() }) else { return }
        let (count, hash) = Self.summary(digest())
        var w = ByteWriter()
        w.byte(2)
        w.varint(UInt64(count))
        w.u64(hash)
        sendFrame(Wire.Frame(.directory, w.bytes), to: peer.name, address: peer.address)
    }

    /// Every table this node holds, its own included, by owner: (owner, version).
    func digest() -> [(String, UInt64)] {
        state.withLock { s in [(node, s.localVersion)] + s.tables.map { ($0.key, $0.value.version) } }
    }

    /// The digest's size and FNV-1a hash over its pairs in owner order: two nodes with the same
    /// tables compute the same summary.
    static func summary(_ digest: [(String, UInt64)]) -> (Int, UInt64) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for (n, v) in digest.sorted(by: { $0.0 < $1.0 }) {
            for b in n.utf8 { mix(b) }
            mix(0)
            for i in 0..<8 { mix(UInt8(truncatingIfNeeded: v >> (8 * i))) }
        }
        return (digest.count, h)
    }

    func sendDigest(to name: String, address: String, reply: Bool) {
        var w = ByteWriter()
        w.byte(0)
        w.byte(reply ? 1 : 0)
        let digest = digest()
        w.varint(UInt64(digest.count))
        for (n, v) in digest { w.string(n); w.u64(v) }
        sendFrame(Wire.Frame(.directory, w.bytes), to: name, address: address)
    }

    func tableFrame(node: String, version: UInt64, entries: [DirectoryEntry]) -> Wire.Frame {
        var w = ByteWriter()
        w.byte(1)
        w.string(node)
        w.u64(version)
        w.varint(UInt64(entries.count))
        for e in entries { w.string(e.path); w.string(e.contract) }
        return Wire.Frame(.directory, w.bytes)
    }

    func sendFrame(_ frame: Wire.Frame, to name: String, address: String) {
        Task { [weak self] in
            guard let self, let channel = await self.connection(to: name, address: address) else { return }
            channel.send(frame)
        }
    }

    func handleDirectory(_ payload: [UInt8], from peer: String, on channel: any Channel) {
        var r = ByteReader(payload)
        do {
            switch try r.byte() {
            case 0:
                let reply = try r.byte() == 1
                let n = try r.count()
                var theirs: [String: UInt64] = [:]
                for _ in 0..<n { theirs[try r.string()] = try r.u64() }
                // Send ours if they lack it; ask each owner whose table they have newer for it.
                let (mine, versions, members) = state.withLock { s in (s.localVersion, s.tables.mapValues(\.version), s.membership.members) }
                if (theirs[node] ?? 0) < mine { channel.send(tableFrame(node: node, version: mine, entries: kernel.uris.entries)) }
                for (n, v) in theirs where n != node && v > versions[n] ?? 0 {
                    guard let member = members[n], member.status <= .suspect else { continue }
                    // Our digest shows the owner our older copy, and it answers with its table. (A
                    // digest that was itself an answer is not answered again: the peer sent its table.)
                    if n != peer || reply { sendDigest(to: n, address: member.address, reply: false) }
                }
            case 2:
                let count = try r.count(), hash = try r.u64()
                let mine = Self.summary(digest())
                if mine != (count, hash), let member = state.withLock({ $0.membership.members[peer] }) {
                    sendDigest(to: peer, address: member.address, reply: true)
                }
            case 1:
                let owner = try r.string()
                let version = try r.u64()
                let n = try r.count()
                guard n <= Self.maxTableEntries else { throw r.fail("a table of \(n) entries (at most \(Self.maxTableEntries) are kept per node)") }
                var entries: [DirectoryEntry] = []
                for _ in 0..<n {
                    let path = try r.string(), contract = try r.string()
                    entries.append(DirectoryEntry(uri: "decos://\(owner)\(path)", path: path, contract: contract, node: owner))
                }
                guard owner == peer else {
                    return logger.warning("node \(peer) sent a directory table for \(owner): a node's table is taken from that node alone")
                }
                applyTable(owner, version: version, entries: entries)
            case let k:
                throw r.fail("unknown directory message \(k)")
            }
        } catch {
            logger.warning("malformed directory message from \(peer): \(error)")
        }
    }

    /// The most services one node's table may list here.
    static let maxTableEntries = 65_536

    /// Takes a node's table if it is newer than ours, and tells directory subscribers what changed.
    func applyTable(_ owner: String, version: UInt64, entries: [DirectoryEntry]) {
        guard owner != node else { return }
        let old: [DirectoryEntry]? = state.withLock { s in
            // Only members we believe live: a dead node's table must not come back through gossip.
            guard let m = s.membership.members[owner], m.status <= .suspect else { return nil }
            if let t = s.tables[owner], t.version >= version { return nil }
            defer { s.tables[owner] = Table(version: version, entries: entries) }
            return s.tables[owner]?.entries ?? []
        }
        guard let old else { return }
        let before = Set(old), after = Set(entries)
        for e in entries where !before.contains(e) { kernel.publish(Message(.insert, to: "", body: try? infoset(e)), from: "/directory") }
        for e in old where !after.contains(e) { kernel.publish(Message(.delete, to: "", body: try? infoset(e)), from: "/directory") }
    }
}
