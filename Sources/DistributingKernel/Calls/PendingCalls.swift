import ServiceKernel

/// A request sent to another node, waiting for its reply.
struct Pending {
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

/// The calls waiting for replies, by correlation number.
typealias PendingCalls = CorrelationTable<Pending>

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
