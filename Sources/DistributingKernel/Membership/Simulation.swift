/// A deterministic, in-process network of `Membership` machines: virtual time, message loss and
/// delay from a seeded generator, so a run replays exactly. Used by the tests (a handful of nodes)
/// and by `decos-bench swim` (a thousand).
public struct SimulatedCluster {
    public struct Settings: Sendable {
        public var nodes = 10
        public var loss = 0.0
        public var minDelay: UInt64 = 1
        public var maxDelay: UInt64 = 10
        public var tick: UInt64 = 10
        public var seed: UInt64 = 1
        public var config = Membership.Config()
        public init() {}
    }

    enum Payload {
        case swim(Membership.Message)
        /// A node's table version, pushed on change or sent in answer to a digest.
        case table(owner: String, version: UInt64)
        /// Anti-entropy: the sender's versions; the receiver answers with what the sender lacks.
        case digest([String: UInt64], reply: Bool)
        /// The summary (count and hash of a digest); the model carries the digest to compare by.
        case summary([String: UInt64])
    }

    struct InFlight {
        var at: UInt64
        var from: String
        var fromAddress: String
        var to: String
        var payload: Payload
    }

    public let settings: Settings
    public private(set) var nodes: [String: Membership] = [:]
    public private(set) var now: UInt64 = 0
    public private(set) var down: Set<String> = []
    /// Which side of a partition each node is on; messages between sides are lost. Empty: no partition.
    public private(set) var sides: [String: Int] = [:]
    /// Extra loss of what each node receives (a node with a bad link of its own).
    public var inboundLoss: [String: Double] = [:]
    /// Nodes whose outgoing messages are all lost (they hear, but are not heard).
    public var mute: Set<String> = []
    /// Bytes each node sent, as the wire encoding would carry them.
    public private(set) var bytesSent: [String: Int] = [:]
    public private(set) var messagesSent = 0
    /// Every status change any node saw: (time, observer, member).
    public private(set) var events: [(at: UInt64, observer: String, member: Membership.Member)] = []
    private var queue: [InFlight] = []
    private var rng: SplitMix
    private var addresses: [String: String] = [:]
    /// The shared namespace as each node knows it: owner → table version (the network manager's
    /// push-on-change and digest anti-entropy, modelled at the level of versions).
    public private(set) var tables: [String: [String: UInt64]] = [:]
    /// Milliseconds between a node's anti-entropy exchanges (0 turns the namespace model off).
    public var syncInterval: UInt64 = 2000
    private var lastSync: [String: UInt64] = [:]

    public init(_ settings: Settings) {
        self.settings = settings
        rng = SplitMix(seed: settings.seed)
        for i in 0..<settings.nodes {
            let name = "n\(i)"
            addresses["sim:\(i)"] = name
            nodes[name] = Membership(name: name, address: "sim:\(i)", config: settings.config, seed: settings.seed &+ UInt64(i) &* 7919)
        }
    }

    public static func name(_ i: Int) -> String { "n\(i)" }

    /// Every node joins through node 0.
    public mutating func joinAll() {
        for i in 1..<settings.nodes {
            let n = SimulatedCluster.name(i)
            let effects = nodes[n]!.join(seeds: ["sim:0"]) + nodes[n]!.tick(now: now)
            apply(effects, of: n)
        }
    }

    public mutating func kill(_ name: String) { down.insert(name) }

    /// Cuts the cluster into groups that cannot reach each other; nodes in no group form one more.
    public mutating func partition(_ groups: [[String]]) {
        sides = [:]
        for (i, g) in groups.enumerated() { for n in g { sides[n] = i + 1 } }
    }

    public mutating func heal() { sides = [:] }

    /// True when every running node lists every other running node as alive.
    public func allAlive() -> Bool {
        let up = Set(nodes.keys).subtracting(down)
        return up.allSatisfy { n in up.allSatisfy { $0 == n || nodes[n]!.members[$0]?.status == .alive } }
    }

    /// Brings a killed node back as a fresh process (incarnation 0, empty view) that joins again.
    public mutating func restart(_ name: String) {
        down.remove(name)
        let old = nodes[name]!
        nodes[name] = Membership(name: name, address: old.address, config: settings.config, seed: rng.next())
        apply(nodes[name]!.join(seeds: [name == "n0" ? "sim:1" : "sim:0"]) + nodes[name]!.tick(now: now), of: name)
    }

    /// Has the node leave cleanly, then stop.
    public mutating func leave(_ name: String) {
        apply(nodes[name]!.leave(), of: name)
        down.insert(name)
    }

    /// Runs until `time` (virtual milliseconds).
    public mutating func run(until time: UInt64) {
        while now < time {
            now += settings.tick
            deliverDue()
            for name in nodes.keys.sorted() where !down.contains(name) {
                let effects = nodes[name]!.tick(now: now)
                apply(effects, of: name)
                if syncInterval > 0, now >= (lastSync[name] ?? firstSync(name)) + syncInterval {
                    lastSync[name] = now
                    let live = nodes[name]!.members.values.filter { $0.status == .alive }.sorted { $0.name < $1.name }
                    if !live.isEmpty {
                        let peer = live[Int(rng.next() % UInt64(live.count))]
                        var digest = tables[name] ?? [:]
                        digest[name] = version(of: name, at: name)
                        transmit(.summary(digest), from: name, to: peer.name, bytes: 6 + 1 + 2 + 8)
                    }
                }
            }
        }
    }

    /// When a node's anti-entropy clock starts: spread over two seconds by its number. (Not the
    /// name's hashValue, which Swift seeds afresh in every process: runs would not replay.)
    private func firstSync(_ name: String) -> UInt64 {
        ((UInt64(name.dropFirst()) ?? 0) &* 0x9E37_79B9_7F4A_7C15) >> 53
    }

    func version(of owner: String, at node: String) -> UInt64 { tables[node]?[owner] ?? (owner == node ? 1 : 0) }

    /// `owner` changes its table (registers a service): it pushes the new version to every live member.
    public mutating func publish(_ owner: String) {
        let v = version(of: owner, at: owner) + 1
        tables[owner, default: [:]][owner] = v
        for m in nodes[owner]!.live where m.status == .alive {
            transmit(.table(owner: owner, version: v), from: owner, to: m.name, bytes: 6 + 14 + 40)
        }
    }

    /// True when every running node holds `owner`'s latest table.
    public func everyoneHasLatest(of owner: String) -> Bool {
        let v = version(of: owner, at: owner)
        return nodes.keys.filter { !down.contains($0) }.allSatisfy { version(of: owner, at: $0) >= v }
    }

    private mutating func transmit(_ p: Payload, from: String, to: String, bytes: Int) {
        bytesSent[from, default: 0] += bytes
        messagesSent += 1
        if settings.loss > 0, Double(rng.next() % 1_000_000) / 1_000_000 < settings.loss { return }
        if let extra = inboundLoss[to], Double(rng.next() % 1_000_000) / 1_000_000 < extra { return }
        if mute.contains(from) || (sides[from] ?? 0) != (sides[to] ?? 0) { return }
        let delay = settings.minDelay + rng.next() % (settings.maxDelay - settings.minDelay + 1)
        queue.append(InFlight(at: now + delay, from: from, fromAddress: nodes[from]!.address, to: to, payload: p))
    }

    /// Runs until `done` holds or `limit` passes; returns the time it held, or nil.
    public mutating func run(until limit: UInt64, where done: (SimulatedCluster) -> Bool) -> UInt64? {
        while now < limit {
            run(until: now + settings.tick)
            if done(self) { return now }
        }
        return nil
    }

    /// True when every running node lists every other running node as a member (alive, or suspect
    /// and not yet refuted — still in its directory), and no one else.
    public func converged() -> Bool {
        let up = Set(nodes.keys).subtracting(down)
        for n in up {
            var live = 0
            for m in nodes[n]!.members.values where m.status <= .suspect {
                guard up.contains(m.name) else { return false }
                live += 1
            }
            if live != up.count - 1 { return false }
        }
        return true
    }

    /// True when no running node lists `name` as live.
    public func everyoneDropped(_ name: String) -> Bool {
        nodes.keys.filter { !down.contains($0) }.allSatisfy { n in (nodes[n]!.members[name]?.status ?? .dead) >= .dead }
    }

    private mutating func apply(_ effects: [Membership.Effect], of name: String) {
        guard !effects.isEmpty else { return }
        let me = nodes[name]!.me
        for e in effects {
            switch e {
            case .changed(let m):
                events.append((now, name, m))
            case .restarted, .refuted:
                break
            case .send(let to, let address, let message):
                let target = to.isEmpty ? (addresses[address] ?? "") : to
                transmit(.swim(message), from: name, to: target, bytes: Wire.encode(message, from: me).count + 6)
            }
        }
    }

    private mutating func deliverDue() {
        guard !queue.isEmpty else { return }
        var due: [InFlight] = []
        queue.removeAll { f in
            if f.at <= now { due.append(f); return true }
            return false
        }
        due.sort { ($0.at, $0.from, $0.to) < ($1.at, $1.from, $1.to) }
        // What a node sent before it stopped still arrives; a stopped node receives nothing.
        for f in due where !down.contains(f.to) && nodes[f.to] != nil {
            switch f.payload {
            case .swim(let message):
                let effects = nodes[f.to]!.receive(message, from: f.from, address: f.fromAddress, now: now)
                apply(effects, of: f.to)
            case .table(let owner, let v):
                if version(of: owner, at: f.to) < v { tables[f.to, default: [:]][owner] = v }
            case .summary(let theirs):
                // As the network manager does: a different summary is answered with the full digest.
                var mine = tables[f.to] ?? [:]
                mine[f.to] = version(of: f.to, at: f.to)
                if mine != theirs { transmit(.digest(mine, reply: true), from: f.to, to: f.from, bytes: 6 + mine.count * 14) }
            case .digest(let theirs, let reply):
                // As the network manager does: send what they lack, and our digest if they know newer.
                var mine = tables[f.to] ?? [:]
                mine[f.to] = version(of: f.to, at: f.to)
                for (owner, v) in mine.sorted(by: { $0.key < $1.key }) where (theirs[owner] ?? 0) < v {
                    transmit(.table(owner: owner, version: v), from: f.to, to: f.from, bytes: 6 + 14 + 40)
                }
                if reply, theirs.contains(where: { owner, v in owner != f.to && version(of: owner, at: f.to) < v }) {
                    transmit(.digest(mine, reply: false), from: f.to, to: f.from, bytes: 6 + mine.count * 14)
                }
            }
        }
    }
}
