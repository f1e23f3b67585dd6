import ServiceKernel

/// One node's copy of the shared namespace, as a state machine with no clock, lock or socket of
/// its own: it is given what arrived (`receive`), what changed here (`localChanged`), who is live
/// and when to gossip, and answers with `Effect`s for its shell to carry out. The network manager
/// drives it with real frames; `SimulatedCluster` drives the same code with a thousand nodes in
/// virtual time, so the simulator's figures are those of the code that runs.
///
/// The protocol (docs/wire.md, "The shared namespace"): a node pushes its table to every live
/// member when it changes; each sync interval it sends a summary (a hash of every table's
/// version) to one random peer. Equal summaries, the usual case, end the exchange. A peer whose
/// summary differs answers with its full digest; the other then sends its own table if the
/// peer's copy is older, and asks the owner of each table the peer has newer. A member seen to
/// come alive or restart is greeted: sent this node's table and asked for its own. A node's table is
/// taken from that node alone, so no member can speak for another (or freeze another's table
/// with a huge version).
public struct NamespaceReplica: Sendable {
    public enum Message: Sendable, Equatable {
        /// Tables the sender holds: (owner, version). All of them, its own first, in answer to a
        /// summary (`reply`); or one, the receiver's own, to ask the receiver for its table.
        case digest([Version], reply: Bool)
        /// The sender's own table.
        case table(owner: String, version: UInt64, entries: [DirectoryEntry])
        /// The size and hash of the sender's digest.
        case summary(count: Int, hash: UInt64)
    }

    public struct Version: Sendable, Equatable {
        public var owner: String
        public var version: UInt64
        public init(_ owner: String, _ version: UInt64) { self.owner = owner; self.version = version }
    }

    public enum Effect: Sendable, Equatable {
        case send(Message, to: String)
        /// Directory subscribers are told of each entry that came and went.
        case inserted(DirectoryEntry)
        case deleted(DirectoryEntry)
        /// A message that broke the protocol, and why it was not taken (the shell logs it).
        case refused(String)
    }

    /// Who the replica may take tables from and ask: members believed live (alive or suspect).
    /// A dead node's table must not come back through gossip.
    public typealias Live = (String) -> Bool

    struct Table: Sendable {
        var version: UInt64
        var entries: [DirectoryEntry]
    }

    public let node: String
    /// This node's table: its version outranks every earlier life's (`Epoch.firstVersion`).
    public private(set) var version: UInt64
    public private(set) var entries: [DirectoryEntry]
    private var tables: [String: Table] = [:]

    /// The most services one node's table may list here.
    public static let maxTableEntries = 65_536

    public init(node: String, firstVersion: UInt64, entries: [DirectoryEntry] = []) {
        self.node = node
        self.version = firstVersion
        self.entries = entries
    }

    /// Entries of the other nodes, by owner.
    public var remoteEntries: [DirectoryEntry] { tables.keys.sorted().flatMap { tables[$0]!.entries } }

    /// The version of `owner`'s table held here (0: none).
    public func version(of owner: String) -> UInt64 { owner == node ? version : tables[owner]?.version ?? 0 }

    /// Every table held here, this node's first, then by owner (so the same tables make the same
    /// digest, and a simulated run replays).
    public var digest: [Version] { [Version(node, version)] + tables.keys.sorted().map { Version($0, tables[$0]!.version) } }

    /// This node's services changed: a new version, pushed to every live peer.
    public mutating func localChanged(_ entries: [DirectoryEntry], peers: [String]) -> [Effect] {
        self.entries = entries
        version += 1
        let table = ownTable
        return peers.map { .send(table, to: $0) }
    }

    /// The periodic exchange with one peer: the summary of what is held here.
    public func sync(with peer: String) -> Effect {
        let (count, hash) = Self.summary(digest)
        return .send(.summary(count: count, hash: hash), to: peer)
    }

    /// A member came back, is new, or restarted: it is sent this node's table, and asked for its
    /// own. Two small messages, not the digest: in a thousand-node join every node greets every
    /// other, and a digest each (up to 14 kB at that size) made the join cost grow with the
    /// cube of the cluster. Other owners' tables reach it from their owners, who greet it too.
    public func greet(_ peer: String) -> [Effect] { [.send(ownTable, to: peer), ask(peer)] }

    /// Asks `owner` for its table: a digest of our copy of it alone, which the owner answers with
    /// its table when ours is older.
    func ask(_ owner: String) -> Effect { .send(.digest([Version(owner, version(of: owner))], reply: false), to: owner) }

    /// `owner` died, left, or restarted into an older epoch: its table goes.
    public mutating func forget(_ owner: String) -> [Effect] {
        (tables.removeValue(forKey: owner)?.entries ?? []).map(Effect.deleted)
    }

    public mutating func receive(_ message: Message, from peer: String, live: Live) -> [Effect] {
        switch message {
        case .summary(let count, let hash):
            let mine = Self.summary(digest)
            guard mine != (count, hash), live(peer) else { return [] }
            return [.send(.digest(digest, reply: true), to: peer)]
        case .digest(let theirs, let reply):
            var effects: [Effect] = []
            var heard = Set<String>()
            for v in theirs {
                guard heard.insert(v.owner).inserted else { continue }
                if v.owner == node {
                    continue
                } else if v.version > version(of: v.owner), live(v.owner), v.owner != peer || reply {
                    // (A digest that was not an answer is an ask, from the peer whose own table it
                    // names: nothing to ask back.)
                    effects.append(ask(v.owner))
                }
            }
            // Ours, if they lack it.
            let theirsOfMine = theirs.first { $0.owner == node }?.version ?? 0
            if theirsOfMine < version { effects.insert(.send(ownTable, to: peer), at: 0) }
            return effects
        case .table(let owner, let version, let entries):
            guard owner == peer else {
                return [.refused("node \(peer) sent a directory table for \(owner): a node's table is taken from that node alone")]
            }
            return take(owner, version: version, entries: entries, live: live)
        }
    }

    private var ownTable: Message { .table(owner: node, version: version, entries: entries) }

    /// Takes a node's table if it is newer than ours, and says what changed.
    private mutating func take(_ owner: String, version: UInt64, entries: [DirectoryEntry], live: Live) -> [Effect] {
        guard owner != node, live(owner) else { return [] }
        if let t = tables[owner], t.version >= version { return [] }
        let old = tables[owner]?.entries ?? []
        tables[owner] = Table(version: version, entries: entries)
        let before = Set(old), after = Set(entries)
        return entries.filter { !before.contains($0) }.map(Effect.inserted) + old.filter { !after.contains($0) }.map(Effect.deleted)
    }

    /// The digest's size and FNV-1a hash over its pairs in owner order: two nodes with the same
    /// tables compute the same summary.
    static func summary(_ digest: [Version]) -> (Int, UInt64) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for v in digest.sorted(by: { $0.owner < $1.owner }) {
            for b in v.owner.utf8 { mix(b) }
            mix(0)
            for i in 0..<8 { mix(UInt8(truncatingIfNeeded: v.version >> (8 * i))) }
        }
        return (digest.count, h)
    }
}
