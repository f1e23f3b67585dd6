/// SWIM membership with suspicion and incarnation numbers (Das, Gupta, Motivala 2002), with what a
/// real network needs beyond the paper, as memberlist and Serf run it: Lifeguard's local health and
/// confirmed suspicion (Lifeguard.swift), the suspect told of its suspicion by the prober itself,
/// and reconnection to members declared dead, so a node falsely declared dead, or the far side of a
/// healed partition, merges back. A pure state machine: time and randomness come in, messages and
/// events go out. The network manager drives it over real connections; the simulator drives a
/// thousand of them over a simulated network.
public struct Membership: Sendable {
    public enum Status: UInt8, Sendable, Hashable, Comparable {
        case alive = 0, suspect = 1, dead = 2, left = 3
        public static func < (a: Status, b: Status) -> Bool { a.rawValue < b.rawValue }
    }

    /// What one node believes of another.
    public struct Member: Sendable, Hashable {
        public var name: String
        public var address: String
        public var incarnation: UInt64
        public var status: Status
        /// Of a suspect: the member whose own probe failed, so that a suspicion relayed by gossip
        /// is not mistaken for another member confirming it.
        public var suspector: String

        public init(name: String, address: String, incarnation: UInt64, status: Status, suspector: String = "") {
            self.name = name
            self.address = address
            self.incarnation = incarnation
            self.status = status
            self.suspector = status == .suspect ? suspector : ""
        }

        /// SWIM's precedence: a higher incarnation wins; at the same incarnation, the worse status wins.
        /// A departure is final for its incarnation: only the member itself, alive again at a higher
        /// incarnation (a restart that refuted it), brings it back.
        /// The life of the member this belief is about (`Epoch`): its restarts raise it.
        public var epoch: UInt64 { Epoch.of(incarnation: incarnation) }

        func overrides(_ old: Member) -> Bool {
            if old.status == .left { return status == .alive && incarnation > old.incarnation }
            if status == .left { return incarnation >= old.incarnation }
            if incarnation != old.incarnation { return incarnation > old.incarnation }
            return status > old.status
        }
    }

    /// Timings, in milliseconds of whatever clock drives the machine.
    public struct Config: Sendable, Hashable {
        /// How often a member is probed.
        public var probeInterval: UInt64 = 1000
        /// How long a direct ping waits for its ack before asking others to try.
        public var probeTimeout: UInt64 = 400
        /// How many other members relay an indirect ping.
        public var indirectProbes: Int = 3
        /// How long a suspect has to refute before it is declared dead once other members confirm
        /// the suspicion (the usual case for a node that really died: everyone's probes fail).
        public var suspicionTimeout: UInt64 = 4000
        /// How long a suspicion no other member confirms lasts: a single prober's bad luck, or its
        /// own bad network, gets this much time to be refuted.
        public var suspicionMaxTimeout: UInt64 = 12_000
        /// How many confirmations bring the suspicion timeout down to `suspicionTimeout`.
        public var suspicionConfirmations: Int = 2
        /// The most the local health score stretches the probe interval: up to (1 + this) times.
        public var healthLimit: Int = 8
        /// How often one member declared dead is sent this node's full view (Serf's reconnect): if it
        /// is alive after all, or the partition between us has healed, the exchange merges us again.
        public var reconnectInterval: UInt64 = 3000
        /// How long a dead member's address is kept for reconnecting (Serf's default: a day).
        public var reconnectTimeout: UInt64 = 86_400_000
        /// Each update rides on this many outgoing messages × log2(members + 1).
        public var gossipMultiplier: Int = 3
        /// The most updates piggybacked on one message.
        public var maxGossip: Int = 16
        /// How often a node that knows no live peer contacts its seeds again.
        public var rejoinInterval: UInt64 = 1000
        /// How often pending updates are sent to `gossipFanout` random members.
        public var gossipInterval: UInt64 = 200
        public var gossipFanout: Int = 3
        /// How long a dead or departed member stays in the table, so that stale gossip calling it
        /// alive is outbid; then it is forgotten and the table does not grow with every node ever seen.
        public var retainGone: UInt64 = 30_000

        public init() {}

        /// The longest a dead member can stay listed as alive by a healthy member probing it, when
        /// the others confirm the suspicion: up to two probe intervals to be picked and found
        /// silent, plus the suspicion timeout.
        public var detectionBound: UInt64 { probeInterval * 2 + suspicionTimeout }

        /// How recently a member must have sent this node a message for another member's word
        /// that it died to count as a suspicion only (`Membership.weighed`); nil: two probe
        /// intervals. Never more than half the suspicion timeout that precedes any real death.
        public var freshEvidence: UInt64?
        var evidenceWindow: UInt64 { min(freshEvidence ?? probeInterval * 2, suspicionTimeout / 2) }
    }

    /// Incarnations above this are refused: a refutation adds one, and a hostile or broken peer's
    /// `UInt64.max` must not overflow it (or leave the member unable to outbid it).
    public static let maxIncarnation: UInt64 = 1 << 62
    /// Dead members kept for reconnecting, at most; the oldest goes first.
    static let maxFailed = 1024
    /// Members known at most: gossip naming more new ones is not taken (a member that invents
    /// names cannot grow every node's table, and each table kept per peer, without bound).
    public static let maxMembers = 10_000

    /// A suspicion under way: since when, how many confirmations would shorten it fully, and the
    /// members that have suspected it so far (the first one included).
    struct Suspicion: Hashable {
        var since: UInt64
        var expected: Int
        var by: Set<String>
    }

    public enum Message: Sendable, Hashable {
        case ping(seq: UInt64, gossip: [Member])
        case pingReq(seq: UInt64, target: String, targetAddress: String, gossip: [Member])
        case ack(seq: UInt64, gossip: [Member])
        /// From a relay of an indirect probe whose target did not answer it in time: the relay is
        /// reachable, so the prober's own health is not to blame (Lifeguard).
        case nack(seq: UInt64)
        /// Push-pull: the sender's full view; the receiver merges it and answers with its own once.
        case sync(members: [Member], reply: Bool)
        /// Updates alone, sent to a few members every gossip interval so news spreads in rounds of
        /// that interval rather than of the probe interval.
        case gossip(members: [Member])
    }

    public enum Effect: Sendable, Hashable {
        case send(to: String, address: String, Message)
        /// A member's status changed (joined, suspected, died, left, came back).
        case changed(Member)
        /// A member was heard of in a new life (a higher epoch): it restarted, and whatever was
        /// held for its old self — calls, subscriptions, transfers — is over.
        case restarted(Member)
        /// This node refuted a suspicion or death of itself: members that believed it may have
        /// dropped what it held with them (its subscriptions, say).
        case refuted
    }

    public let name: String
    public let address: String
    public private(set) var incarnation: UInt64
    public internal(set) var config: Config
    public private(set) var members: [String: Member] = [:]

    private var rng: SplitMix
    private var seeds: [String] = []
    private var lastJoin: UInt64?
    private var lastGossip: UInt64 = 0
    private var liveNames: [String] = []
    private var liveIndex: [String: Int] = [:]
    /// Probe numbers start at random in each life of a node (below 2^62, so they never wrap): an
    /// ack recorded in an earlier life and replayed now matches no probe of this one.
    private var nextSeq: UInt64
    private var probeOrder: [String] = []
    /// The direct probe under way: who, since when, how many relays were asked, how many nacked.
    private var probing: (seq: UInt64, target: String, started: UInt64, relays: Int, nacks: Int, indirect: Bool, asked: [String])?
    private var lastProbe: UInt64 = 0
    private var health: LocalHealth
    /// Suspects, by name.
    private var suspicions: [String: Suspicion] = [:]
    /// Members declared dead, with their address and since when, for reconnecting.
    private var failed: [String: (address: String, since: UInt64)] = [:]
    private var lastReconnect: UInt64 = 0
    /// Dead or departed members and when they became so, to be forgotten after `retainGone`.
    private var goneAt: [String: UInt64] = [:]
    /// When each member last sent this node a message itself: fresh evidence that it runs.
    private var heard: [String: UInt64] = [:]
    /// Set by `leave()`: hearing that we left is then true, not something to refute.
    private var leaving = false
    /// Indirect probes this node relays: our seq → (requester, requester's seq, since when).
    private var relays: [UInt64: (from: String, address: String, seq: UInt64, started: UInt64)] = [:]
    /// Updates still to be gossiped, and how many more times; `buckets[r]` names those with r sends
    /// left (stale names are skipped), so picking the least-sent costs no scan of them all.
    private var broadcasts: [String: (member: Member, remaining: Int)] = [:]
    private var buckets: [[String]] = []

    /// `incarnation`: where this life starts (`Epoch.firstIncarnation`), above every earlier life's.
    public init(name: String, address: String, config: Config = Config(), seed: UInt64, incarnation: UInt64 = 0) {
        self.name = name
        self.address = address
        self.incarnation = incarnation
        self.config = config
        self.rng = SplitMix(seed: seed)
        var numbering = SplitMix(seed: ~seed)  // its own stream: the protocol's draws stay as they were
        self.nextSeq = numbering.next() >> 2 | 1
        self.health = LocalHealth(limit: config.healthLimit)
    }

    public var me: Member { Member(name: name, address: address, incarnation: incarnation, status: .alive) }

    /// Members believed alive or suspect, not counting this node.
    public var live: [Member] { Self.live(members) }

    /// Those of `members` believed alive or suspect, by name.
    static func live(_ members: [String: Member]) -> [Member] {
        members.values.filter { $0.status <= .suspect }.sorted { $0.name < $1.name }
    }

    /// Keeps `liveNames` in step with a member's status, in O(1): the probe and gossip paths sample
    /// from it without sorting a thousand-member view each time.
    private mutating func track(_ m: Member?, name: String) {
        let isLive = (m?.status ?? .dead) <= .suspect
        if isLive, liveIndex[name] == nil {
            liveIndex[name] = liveNames.count
            liveNames.append(name)
        } else if !isLive, let i = liveIndex.removeValue(forKey: name) {
            let last = liveNames.removeLast()
            if i < liveNames.count {
                liveNames[i] = last
                liveIndex[last] = i
            }
        }
    }

    // MARK: joining and leaving

    /// Contacts seeds: each gets our full view, and answers with its own. Until some peer is known
    /// alive, `tick` knocks again every `rejoinInterval` (seeds may start later, or the first
    /// message may be lost).
    public mutating func join(seeds: [String]) -> [Effect] {
        self.seeds = seeds.filter { $0 != address }
        lastJoin = nil
        return []
    }

    private mutating func knock(now: UInt64) -> [Effect] {
        guard !seeds.isEmpty, now >= (lastJoin ?? 0) + config.rejoinInterval || lastJoin == nil,
              !members.values.contains(where: { $0.status <= .suspect }) else { return [] }
        lastJoin = now
        return seeds.map { .send(to: "", address: $0, .sync(members: fullView(), reply: true)) }
    }

    /// Tells everyone we are leaving; they drop us at once rather than after a suspicion.
    public mutating func leave() -> [Effect] {
        leaving = true
        incarnation += 1
        let farewell = Member(name: name, address: address, incarnation: incarnation, status: .left)
        return live.map { .send(to: $0.name, address: $0.address, .sync(members: [farewell], reply: false)) }
    }

    func fullView() -> [Member] { [me] + members.values.sorted { $0.name < $1.name } }

    // MARK: time

    /// Advances the protocol to `now`: starts a probe each interval, escalates a silent probe to
    /// indirect ones, turns a failed probe into suspicion, and expired suspicion into death.
    public mutating func tick(now: UInt64) -> [Effect] {
        var out: [Effect] = knock(now: now)
        out += reconnect(now: now)
        if let p = probing {
            if !p.indirect, now >= p.started + config.probeTimeout {
                probing?.indirect = true
                let helpers = pick(config.indirectProbes, excluding: [p.target])
                probing?.relays = helpers.count
                probing?.asked = helpers.map(\.name)
                if let target = members[p.target] {
                    for h in helpers {
                        out.append(.send(to: h.name, address: h.address,
                                         .pingReq(seq: p.seq, target: target.name, targetAddress: target.address, gossip: gossip())))
                    }
                }
            } else if now >= p.started + health.scale(config.probeInterval) {
                // A slow node waits longer for indirect acks and nacks before it suspects anyone.
                probing = nil
                health.probeFailed(relaysAsked: p.relays, nacks: p.nacks)
                if var m = members[p.target], m.status <= .suspect {
                    // Our own failed probe: a suspicion of ours, or a confirmation of another's,
                    // gossiped under our name so others count it.
                    m.suspector = name
                    if m.status == .suspect { confirm(m.name, by: name) }
                    m.status = .suspect
                    out += apply(m, by: name, now: now)
                }
            }
        }
        // In order of sequence number, not of hashing (seeded per process): a simulation replays exactly.
        for (n, r) in relays.sorted(by: { $0.key < $1.key }) where now >= r.started + config.probeTimeout * 4 / 5 {
            // Answered before the requester gives up on its indirect probe.
            relays[n] = nil
            out.append(.send(to: r.from, address: r.address, .nack(seq: r.seq)))
        }
        for (n, s) in suspicions.sorted(by: { $0.key < $1.key })
        where now >= s.since + suspicionTimeout(confirmations: s.by.count - 1, expected: s.expected,
                                                 min: config.suspicionTimeout, max: config.suspicionMaxTimeout) {
            if var m = members[n], m.status == .suspect {
                m.status = .dead
                out += apply(m, by: name, now: now)
            }
        }
        for (n, since) in goneAt where now >= since + config.retainGone {
            goneAt[n] = nil
            heard[n] = nil
            if let m = members[n], m.status >= .dead {
                members[n] = nil
                broadcasts[n] = nil
            }
        }
        if now >= lastGossip + config.gossipInterval, !broadcasts.isEmpty {
            lastGossip = now
            for m in pick(config.gossipFanout, excluding: []) {
                out.append(.send(to: m.name, address: m.address, .gossip(members: gossip())))
            }
        }
        if probing == nil, now >= lastProbe + health.scale(config.probeInterval), let target = nextProbeTarget() {
            lastProbe = now
            let seq = nextSeq
            nextSeq += 1
            probing = (seq, target.name, now, 0, 0, false, [])
            // A suspect is told so by the one probing it, so it can refute at once (Lifeguard's buddy system).
            out.append(.send(to: target.name, address: target.address, .ping(seq: seq, gossip: gossip(about: target))))
        }
        return out
    }

    /// Every `reconnectInterval`, one member declared dead (at random) gets our full view and is
    /// asked for its own, as Serf reconnects to failed members. A member that was alive all along
    /// sees itself called dead and refutes; across a healed partition each side learns the other is
    /// back. Knocking on the seeds (`knock`) covers a node that knows no one alive at all.
    private mutating func reconnect(now: UInt64) -> [Effect] {
        guard now >= lastReconnect + config.reconnectInterval else { return [] }
        lastReconnect = now
        failed = failed.filter { now < $0.value.since + config.reconnectTimeout }
        guard !failed.isEmpty else { return [] }
        let names = failed.keys.sorted()  // sorted, so a simulation replays exactly
        let n = names[Int(rng.next() % UInt64(names.count))]
        return [.send(to: n, address: failed[n]!.address, .sync(members: fullView(), reply: true))]
    }

    /// Round-robin over a shuffled list, reshuffled each pass (SWIM §4.3), so every member is
    /// probed within a bounded time.
    private mutating func nextProbeTarget() -> Member? {
        while true {
            if probeOrder.isEmpty {
                probeOrder = liveNames
                guard !probeOrder.isEmpty else { return nil }
                rng.shuffle(&probeOrder)
            }
            let n = probeOrder.removeLast()
            if let m = members[n], m.status <= .suspect { return m }
        }
    }

    private mutating func pick(_ k: Int, excluding: Set<String>) -> [Member] {
        guard !liveNames.isEmpty else { return [] }
        // Sample k distinct alive members without shuffling the whole view.
        var chosen: [Member] = []
        var tries = 0
        while chosen.count < k && tries < 4 * k + 8 {
            tries += 1
            let name = liveNames[Int(rng.next() % UInt64(liveNames.count))]
            if let m = members[name], m.status == .alive, !excluding.contains(name), !chosen.contains(where: { $0.name == name }) {
                chosen.append(m)
            }
        }
        return chosen
    }

    // MARK: messages

    public mutating func receive(_ message: Message, from sender: String, address: String, now: UInt64) -> [Effect] {
        var out: [Effect] = []
        if members[sender] != nil { heard[sender] = now }
        switch message {
        case .ping(let seq, let g):
            out += merge(g, from: sender, now: now)
            // A sender we believe suspect or dead is evidently running: tell it, so it refutes now
            // rather than never (once the news has been gossiped out, nothing else would reach it).
            out.append(.send(to: sender, address: address, .ack(seq: seq, gossip: gossip(about: members[sender]))))
        case .pingReq(let seq, let target, let targetAddress, let g):
            out += merge(g, from: sender, now: now)
            let mine = nextSeq
            nextSeq += 1
            relays[mine] = (sender, address, seq, now)
            out.append(.send(to: target, address: targetAddress, .ping(seq: mine, gossip: gossip(about: members[target]))))
        case .ack(let seq, let g):
            out += merge(g, from: sender, now: now)
            // Only the member probed, or a member asked to probe it, answers the probe.
            if let p = probing, p.seq == seq, sender == p.target || p.asked.contains(sender) {
                probing = nil
                health.probeSucceeded()
            } else if let r = relays.removeValue(forKey: seq) {
                out.append(.send(to: r.from, address: r.address, .ack(seq: r.seq, gossip: gossip())))
            }
        case .nack(let seq):
            if probing?.seq == seq { probing?.nacks += 1 }
        case .sync(let view, let reply):
            out += merge(view, from: sender, now: now)
            if reply { out.append(.send(to: sender, address: address, .sync(members: fullView(), reply: false))) }
        case .gossip(let g):
            out += merge(g, from: sender, now: now)
        }
        return out
    }

    /// Takes in what `sender` believes of members, by SWIM's precedence.
    mutating func merge(_ updates: [Member], from sender: String, now: UInt64) -> [Effect] {
        var out: [Effect] = []
        for u in updates where u.incarnation <= Self.maxIncarnation {
            if u.name == name {
                // Refute: someone thinks we are suspect, dead, or gone (a restart after leaving). Outbid them.
                if u.status != .alive, !leaving, u.incarnation >= incarnation {
                    incarnation = u.incarnation + 1
                    health.refuted()
                    queue(me)
                    if u.status >= .dead { out.append(.refuted) }
                }
                continue
            }
            let u = weighed(u, from: sender, now: now)
            if let old = members[u.name] {
                if u.status == .suspect, old.status == .suspect, u.incarnation == old.incarnation {
                    confirm(u.name, by: u.suspector)
                }
                guard u.overrides(old) else { continue }
            } else if members.count >= Self.maxMembers {
                continue
            }
            out += apply(u, by: sender, now: now)
        }
        return out
    }

    /// A death `sender` declares of a member this node heard from itself within the evidence window
    /// is taken as a suspicion: the member refutes it, or this node's own probes confirm it. What
    /// it guards against: a node cut off from the rest concludes alone that they are all dead and,
    /// back, says so; members that never lost each other would each drop the other — its services,
    /// its calls — until it refutes (memberlist and Serf do). A real death is declared only after a
    /// suspicion timeout of silence, longer than the window, so it is taken at once as before.
    /// It helps most in small clusters: in one of n members, two talk directly about every
    /// (n − 1) / 2 probe intervals, so past a handful of members a death is seldom weighed.
    private func weighed(_ u: Member, from sender: String, now: UInt64) -> Member {
        guard u.status == .dead, let old = members[u.name], old.status <= .suspect,
              let at = heard[u.name], now < at + config.evidenceWindow else { return u }
        return Member(name: u.name, address: u.address, incarnation: u.incarnation, status: .suspect,
                      suspector: old.status == .suspect && old.incarnation == u.incarnation ? old.suspector : sender)
    }

    /// Another member suspects a suspect too: the suspicion is likelier true, and shortens.
    private mutating func confirm(_ member: String, by other: String) {
        guard var s = suspicions[member], s.by.count <= s.expected, other != member, !other.isEmpty else { return }
        s.by.insert(other)
        suspicions[member] = s
    }

    /// Records a new belief about a member (told by `source`, or concluded by this node), gossips
    /// it on, and reports a status change.
    mutating func apply(_ m: Member, by source: String, now: UInt64) -> [Effect] {
        let old = members[m.name]
        members[m.name] = m
        track(m, name: m.name)
        let restarted: [Effect] = old.map { m.epoch > $0.epoch } == true ? [.restarted(m)] : []
        if m.status == .suspect {
            if old?.status != .suspect || old?.incarnation != m.incarnation {
                // Confirmations can come only from members other than the suspect and the first suspector.
                suspicions[m.name] = Suspicion(since: now, expected: min(config.suspicionConfirmations, max(0, liveNames.count - 1)),
                                               by: [m.suspector.isEmpty ? source : m.suspector])
            }
        } else {
            suspicions[m.name] = nil
        }
        if m.status >= .dead { goneAt[m.name] = goneAt[m.name] ?? now } else { goneAt[m.name] = nil }
        if m.status >= .dead, probing?.target == m.name { probing = nil }
        noteFailure(m, now: now)
        queue(m)
        return restarted + (old?.status == m.status && old?.address == m.address ? [] : [.changed(m)])
    }

    /// Keeps the reconnect list: a dead member joins it, one alive again or departed leaves it.
    private mutating func noteFailure(_ m: Member, now: UInt64) {
        guard m.status == .dead else { failed[m.name] = nil; return }
        if failed[m.name] == nil, failed.count >= Self.maxFailed,
           let oldest = failed.min(by: { $0.value.since < $1.value.since })?.key {
            failed[oldest] = nil
        }
        failed[m.name] = (m.address, failed[m.name]?.since ?? now)
    }

    mutating func queue(_ m: Member) {
        var times = 1
        var n = members.count + 1
        while n > 1 { times += 1; n >>= 1 }
        let r = config.gossipMultiplier * times
        broadcasts[m.name] = (m, r)
        while buckets.count <= r { buckets.append([]) }
        buckets[r].append(m.name)
    }

    /// The updates to piggyback on a message to `member`, led by what we believe of it when that is
    /// anything but alive: the one message sure to reach a member is one addressed to it.
    mutating func gossip(about member: Member?) -> [Member] {
        guard let member, member.status != .alive else { return gossip() }
        return [member] + gossip().filter { $0.name != member.name }.prefix(config.maxGossip - 1)
    }

    /// The updates to piggyback on the next message, least-sent first.
    mutating func gossip() -> [Member] {
        var chosen: [Member] = []
        var moved: [(String, Int)] = []
        var taken = Set<String>()
        var r = buckets.count - 1
        while r > 0 && chosen.count < config.maxGossip {
            guard let name = buckets[r].popLast() else { r -= 1; continue }
            // A stale entry (the update was re-queued since) is dropped here.
            guard let b = broadcasts[name], b.remaining == r, taken.insert(name).inserted else { continue }
            chosen.append(b.member)
            if r == 1 {
                broadcasts[name] = nil
            } else {
                broadcasts[name] = (b.member, r - 1)
                moved.append((name, r - 1))
            }
        }
        // Sent ones go to the back of their new bucket, behind those not yet sent as often.
        for (name, r) in moved { buckets[r].insert(name, at: 0) }
        if broadcasts.isEmpty { buckets.removeAll() }
        return chosen
    }
}

/// A small fast deterministic generator (SplitMix64), so a simulation replays exactly.
public struct SplitMix: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func shuffle<T>(_ a: inout [T]) {
        var g = self
        a.shuffle(using: &g)
        self = g
    }
}
