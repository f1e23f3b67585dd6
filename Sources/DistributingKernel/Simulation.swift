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

    struct InFlight {
        var at: UInt64
        var from: String
        var fromAddress: String
        var to: String
        var message: Membership.Message
    }

    public let settings: Settings
    public private(set) var nodes: [String: Membership] = [:]
    public private(set) var now: UInt64 = 0
    public private(set) var down: Set<String> = []
    /// Bytes each node sent, as the wire encoding would carry them.
    public private(set) var bytesSent: [String: Int] = [:]
    public private(set) var messagesSent = 0
    /// Every status change any node saw: (time, observer, member).
    public private(set) var events: [(at: UInt64, observer: String, member: Membership.Member)] = []
    private var queue: [InFlight] = []
    private var rng: SplitMix
    private var addresses: [String: String] = [:]

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
            let effects = nodes[n]!.join(seeds: ["sim:0"])
            apply(effects, of: n)
        }
    }

    public mutating func kill(_ name: String) { down.insert(name) }

    /// Brings a killed node back as a fresh process (incarnation 0, empty view) that joins again.
    public mutating func restart(_ name: String) {
        down.remove(name)
        let old = nodes[name]!
        nodes[name] = Membership(name: name, address: old.address, config: settings.config, seed: rng.next())
        apply(nodes[name]!.join(seeds: [name == "n0" ? "sim:1" : "sim:0"]), of: name)
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
            }
        }
    }

    /// Runs until `done` holds or `limit` passes; returns the time it held, or nil.
    public mutating func run(until limit: UInt64, where done: (SimulatedCluster) -> Bool) -> UInt64? {
        while now < limit {
            run(until: now + settings.tick)
            if done(self) { return now }
        }
        return nil
    }

    /// True when every running node sees every other running node alive, and no one else live.
    public func converged() -> Bool {
        let up = Set(nodes.keys).subtracting(down)
        for n in up {
            let live = Set(nodes[n]!.live.filter { $0.status == .alive }.map(\.name))
            if live != up.subtracting([n]) { return false }
        }
        return true
    }

    /// True when no running node lists `name` as live.
    public func everyoneDropped(_ name: String) -> Bool {
        nodes.keys.filter { !down.contains($0) }.allSatisfy { n in !nodes[n]!.live.contains { $0.name == name } }
    }

    private mutating func apply(_ effects: [Membership.Effect], of name: String) {
        let node = nodes[name]!
        for e in effects {
            switch e {
            case .changed(let m):
                events.append((now, name, m))
            case .send(let to, let address, let message):
                let target = to.isEmpty ? (addresses[address] ?? "") : to
                let bytes = Wire.encode(message, from: node.me).count + 6
                bytesSent[name, default: 0] += bytes
                messagesSent += 1
                if settings.loss > 0, Double(rng.next() % 1_000_000) / 1_000_000 < settings.loss { continue }
                let delay = settings.minDelay + rng.next() % (settings.maxDelay - settings.minDelay + 1)
                queue.append(InFlight(at: now + delay, from: name, fromAddress: node.address, to: target, message: message))
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
            let effects = nodes[f.to]!.receive(f.message, from: f.from, address: f.fromAddress, now: now)
            apply(effects, of: f.to)
        }
    }
}
