/// Which membership datagrams of one sender were taken already, so that a recorded one sent again
/// changes nothing (the anti-replay window of IPsec, RFC 4303 §3.4.3). A datagram is named by its
/// sender's epoch (`Epoch`: a restart raises it) and its sequence number in that life: a later
/// epoch starts the window afresh, an earlier one is refused, and within one epoch each number is
/// taken once and those more than `width` behind the highest are refused as too old to tell.
struct ReplayWindow: Sendable, Equatable {
    static let width: UInt64 = 64

    private(set) var epoch: UInt64
    private(set) var highest: UInt64
    /// Bit i: sequence `highest - i` was taken.
    private var seen: UInt64 = 1

    /// The window after the first datagram heard from a sender.
    init(epoch: UInt64, sequence: UInt64) {
        self.epoch = epoch
        highest = sequence
    }

    /// Takes the datagram if it is new; false for a replay, or one too old to know.
    mutating func accept(epoch e: UInt64, sequence s: UInt64) -> Bool {
        if e != epoch {
            guard e > epoch else { return false }
            self = ReplayWindow(epoch: e, sequence: s)
            return true
        }
        if s > highest {
            let ahead = s - highest
            seen = ahead >= Self.width ? 1 : seen << ahead | 1
            highest = s
            return true
        }
        let behind = highest - s
        guard behind < Self.width, seen & (1 << behind) == 0 else { return false }
        seen |= 1 << behind
        return true
    }
}

/// The windows of every sender a node hears datagrams from, bounded: past `limit` senders the
/// table starts afresh (a replay then gets through once per sender at most, and its stale news
/// loses to SWIM's precedence anyway).
struct ReplayWindows: Sendable {
    static let limit = 8192
    private var windows: [String: ReplayWindow] = [:]

    mutating func accept(from sender: String, epoch: UInt64, sequence: UInt64) -> Bool {
        if var w = windows[sender] {
            guard w.accept(epoch: epoch, sequence: sequence) else { return false }
            windows[sender] = w
            return true
        }
        if windows.count >= Self.limit { windows = [:] }
        windows[sender] = ReplayWindow(epoch: epoch, sequence: sequence)
        return true
    }
}
