import ServiceKernel
import Synchronization

/// A request sent to another node, waiting for its reply.
struct Pending: Sendable {
    var node: String
    var continuation: UnsafeContinuation<Message, Never>
    /// When the call times out, in the manager's milliseconds; a sweep every 50 ms enforces it.
    var deadline: UInt64
    /// The buffers it offered, withdrawn when it ends.
    var exports: [Lease]
    var request: Message
    /// Its reply came with buffers, being pulled now: a second reply to it is dropped unread.
    var pulling = false
    /// While pulling: the bytes received from its node when its deadline was last armed. A sweep
    /// that finds more has seen the pull move, and arms the deadline again.
    var progress: UInt64 = 0
}

/// The calls this node waits on, by correlation number. Its lock is its own: a call's
/// bookkeeping never waits behind membership, connections or the namespace, and no other part
/// touches a pending call except through these methods.
final class CallTable: Sendable {
    private let table = Mutex(CorrelationTable<Pending>())

    var count: Int { table.withLock { $0.count } }

    func add(_ correlation: UInt64, _ call: Pending) { table.withLock { $0[correlation] = call } }

    /// The numbers of the calls that `match`.
    func ids(where match: @Sendable (Pending) -> Bool) -> [UInt64] { table.withLock { $0.ids(where: match) } }

    func deadline(of correlation: UInt64) -> UInt64? { table.withLock { $0[correlation]?.deadline } }

    /// Restarts a call's deadline (and, while its reply is pulled, the progress it is judged by).
    func arm(_ correlation: UInt64, deadline: UInt64, progress: UInt64? = nil) {
        table.withLock { t in
            t[correlation]?.deadline = deadline
            if let progress { t[correlation]?.progress = progress }
        }
    }

    /// The calls whose deadline has passed, left in the table.
    func expired(at now: UInt64) -> [(UInt64, Pending)] {
        table.withLock { t in t.ids { $0.deadline <= now }.map { ($0, t[$0]!) } }
    }

    /// Takes a call out to end it. `peer`: the node a reply came from, which must be the one the
    /// call went to — any member can name any correlation, but only the callee answers it.
    func settle(_ correlation: UInt64, from peer: String?) -> Pending? {
        table.withLock { t in
            guard let p = t[correlation], peer == nil || peer == p.node else { return nil }
            return t.removeValue(forKey: correlation)
        }
    }

    /// Marks a call to `peer` as pulling its reply's buffers and arms its deadline; its request,
    /// or nil for a call not made to `peer` or already pulling (a reply is pulled once).
    func startPulling(_ correlation: UInt64, from peer: String, deadline: UInt64, progress: UInt64) -> Message? {
        table.withLock { t in
            guard let p = t[correlation], p.node == peer, !p.pulling else { return nil }
            t[correlation]!.deadline = deadline
            t[correlation]!.pulling = true
            t[correlation]!.progress = progress
            return p.request
        }
    }

    /// Each call pending on `node`, with its request.
    func calls(on node: String) -> [(UInt64, Message)] {
        table.withLock { t in t.ids { $0.node == node }.map { ($0, t[$0]!.request) } }
    }
}

/// Values by correlation number. Numbers are handed out in sequence, so a number modulo the slot
/// count finds its slot without hashing (two hashes per remote call were a visible part of its
/// cost); a value whose slot is still held by an older one goes to a dictionary. The slots double,
/// up to 1,024, while values collide.
struct CorrelationTable<Value> {
    private var slots: [(id: UInt64, value: Value)?] = Array(repeating: nil, count: 16)
    private var overflow: [UInt64: Value] = [:]
    private static var maxSlots: Int { 1024 }

    init() {}

    subscript(id: UInt64) -> Value? {
        get {
            if let s = slots[slot(id)], s.id == id { return s.value }
            return overflow.isEmpty ? nil : overflow[id]
        }
        set {
            if let newValue { insert(id, newValue) } else { _ = removeValue(forKey: id) }
        }
    }

    mutating func removeValue(forKey id: UInt64) -> Value? {
        let i = slot(id)
        if let s = slots[i], s.id == id {
            slots[i] = nil
            return s.value
        }
        return overflow.isEmpty ? nil : overflow.removeValue(forKey: id)
    }

    /// The numbers of the values that `match`.
    func ids(where match: (Value) -> Bool) -> [UInt64] {
        slots.compactMap { s in s.flatMap { match($0.value) ? $0.id : nil } } + overflow.filter { match($0.value) }.map(\.key)
    }

    var count: Int { slots.count { $0 != nil } + overflow.count }

    private func slot(_ id: UInt64) -> Int { Int(truncatingIfNeeded: id) & (slots.count - 1) }

    private mutating func insert(_ id: UInt64, _ value: Value) {
        let i = slot(id)
        if let s = slots[i], s.id == id { slots[i] = (id, value); return }
        // A value already in the dictionary stays there: one number, one place.
        if !overflow.isEmpty, overflow[id] != nil { overflow[id] = value; return }
        if slots[i] == nil { slots[i] = (id, value); return }
        guard slots.count < Self.maxSlots else { overflow[id] = value; return }
        grow()
        insert(id, value)
    }

    /// Doubles the slots and places every value again (an overflowing one may now have a slot).
    private mutating func grow() {
        let old = slots.compactMap { $0 } + overflow.map { ($0.key, $0.value) }
        slots = Array(repeating: nil, count: slots.count * 2)
        overflow = [:]
        for (id, value) in old { insert(id, value) }
    }
}
