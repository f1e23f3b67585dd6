import Infoset
import NIOCore
import ServiceKernel

/// The shared namespace: this node's table pushed on change, anti-entropy with a random peer, and
/// tables taken from their owners.
extension NetworkManager {
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
