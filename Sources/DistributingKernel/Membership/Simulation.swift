import ServiceKernel

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
        case namespace(NamespaceReplica.Message)
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
    /// The namespace's own draws (its peer choice, its losses and delays), so that what the
    /// namespace sends never shifts what membership draws: a membership run replays the same
    /// with the namespace on or off.
    private var namespaceRng: SplitMix
    private var addresses: [String: String] = [:]
    /// Each node's copy of the shared namespace: the replica the network manager runs, driven here
    /// as its shell drives it (push on change, a summary each sync interval, a greeting to each
    /// member that comes alive or restarts, a dead member's table forgotten).
    public private(set) var replicas: [String: NamespaceReplica] = [:]
    /// Milliseconds between a node's anti-entropy exchanges (0: none; pushes and greetings only).
    public var syncInterval: UInt64 = 2000
    /// Namespace messages the receiving end could not decode (there should be none).
    public private(set) var malformed = 0
    private var lastSync: [String: UInt64] = [:]

    public init(_ settings: Settings) {
        self.settings = settings
        rng = SplitMix(seed: settings.seed)
        namespaceRng = SplitMix(seed: ~settings.seed)
        for i in 0..<settings.nodes {
            let name = "n\(i)"
            addresses["sim:\(i)"] = name
            nodes[name] = Membership(name: name, address: "sim:\(i)", config: settings.config, seed: settings.seed &+ UInt64(i) &* 7919)
            replicas[name] = Self.freshReplica(name, now: 0)
        }
    }

    public static func name(_ i: Int) -> String { "n\(i)" }

    /// A node as it boots: one service, and a table version from its epoch (the clock at boot).
    private static func freshReplica(_ name: String, now: UInt64) -> NamespaceReplica {
        let entry = DirectoryEntry(uri: "decos://\(name)/counter", path: "/counter", contract: "urn:decos:examples:counter", node: name)
        return NamespaceReplica(node: name, firstVersion: Epoch.firstVersion(now + 1), entries: [entry])
    }

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
        replicas[name] = Self.freshReplica(name, now: now)
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
                        let peer = live[Int(namespaceRng.next() % UInt64(live.count))]
                        apply([replicas[name]!.sync(with: peer.name)], of: name)
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

    /// `owner` changes its table (registers one more service): it pushes the new version to every live member.
    public mutating func publish(_ owner: String) {
        var entries = replicas[owner]!.entries
        let path = "/service\(entries.count)"
        entries.append(DirectoryEntry(uri: "decos://\(owner)\(path)", path: path, contract: "urn:decos:examples:kv", node: owner))
        let peers = nodes[owner]!.live.map(\.name)
        apply(replicas[owner]!.localChanged(entries, peers: peers), of: owner)
    }

    /// True when every running node holds `owner`'s latest table.
    public func everyoneHasLatest(of owner: String) -> Bool {
        let v = replicas[owner]!.version
        return nodes.keys.filter { !down.contains($0) }.allSatisfy { replicas[$0]!.version(of: owner) >= v }
    }

    private mutating func transmit(_ p: Payload, from: String, to: String, bytes: Int) {
        bytesSent[from, default: 0] += bytes
        messagesSent += 1
        if case .namespace = p {
            guard let delay = Self.fate(from: from, to: to, in: self, rng: &namespaceRng) else { return }
            queue.append(InFlight(at: now + delay, from: from, fromAddress: nodes[from]!.address, to: to, payload: p))
        } else {
            guard let delay = Self.fate(from: from, to: to, in: self, rng: &rng) else { return }
            queue.append(InFlight(at: now + delay, from: from, fromAddress: nodes[from]!.address, to: to, payload: p))
        }
    }

    /// Whether a message is lost (nil), or else its delay.
    private static func fate(from: String, to: String, in c: SimulatedCluster, rng: inout SplitMix) -> UInt64? {
        let s = c.settings
        if s.loss > 0, Double(rng.next() % 1_000_000) / 1_000_000 < s.loss { return nil }
        if let extra = c.inboundLoss[to], Double(rng.next() % 1_000_000) / 1_000_000 < extra { return nil }
        if c.mute.contains(from) || (c.sides[from] ?? 0) != (c.sides[to] ?? 0) { return nil }
        return s.minDelay + rng.next() % (s.maxDelay - s.minDelay + 1)
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
                // As the network manager's shell does.
                switch m.status {
                case .alive: apply(replicas[name]!.greet(m.name), of: name)
                case .suspect: break
                case .dead, .left: apply(replicas[name]!.forget(m.name), of: name)
                }
            case .restarted(let m):
                apply(replicas[name]!.greet(m.name), of: name)
            case .refuted:
                break
            case .send(let to, let address, let message):
                let target = to.isEmpty ? (addresses[address] ?? "") : to
                transmit(.swim(message), from: name, to: target, bytes: Wire.encode(message, from: me).count + 6)
            }
        }
    }

    /// Namespace messages go through their wire encoding: what arrives is what the receiver's
    /// decoder makes of the bytes, and one it refuses is dropped, as the shell drops it.
    private mutating func apply(_ effects: [NamespaceReplica.Effect], of name: String) {
        for case .send(let message, let to) in effects where nodes[to] != nil {
            let bytes = message.encoded
            guard let arrived = try? NamespaceReplica.Message(decoding: bytes) else {
                bytesSent[name, default: 0] += bytes.count + 6
                messagesSent += 1
                malformed += 1
                continue
            }
            transmit(.namespace(arrived), from: name, to: to, bytes: bytes.count + 6)
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
            case .namespace(let message):
                let view = nodes[f.to]!.members
                let effects = replicas[f.to]!.receive(message, from: f.from) { view[$0].map { $0.status <= .suspect } ?? false }
                apply(effects, of: f.to)
            }
        }
    }
}
