/// Which membership datagrams of one sender were taken already, so that a recorded one sent again
/// changes nothing (the anti-replay window of IPsec, RFC 4303 §3.4.3). A datagram is named by its
/// sender's boot epoch (`Epoch`: a restart raises it) and its sequence number in that life: a later
/// epoch starts the window afresh and retires the one before, a retired or earlier one is refused,
/// and within one epoch each number is taken once and those more than `width` behind the highest
/// are refused as too old to tell.
struct ReplayWindow: Sendable, Equatable {
    static let width: UInt64 = 64

    private(set) var epoch: UInt64
    private(set) var highest: UInt64
    /// Bit i: sequence `highest - i` was taken.
    private var seen: UInt64 = 1
    /// The highest epoch no longer taken: the lives this sender has left behind.
    private(set) var retired: UInt64 = 0

    /// The window after the first datagram heard from a sender.
    init(epoch: UInt64, sequence: UInt64) {
        self.epoch = epoch
        highest = sequence
    }

    /// Takes the datagram if it is new; false for a replay, or one too old to know.
    mutating func accept(epoch e: UInt64, sequence s: UInt64) -> Bool {
        if e != epoch {
            guard e > epoch, e > retired else { return false }
            let left = epoch
            self = ReplayWindow(epoch: e, sequence: s)
            retired = max(retired, left)
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

    /// The sender is in life `epoch` now, on the word of its authenticated HELLO, even if that is
    /// older than the one it had (its clock went back): every other life of it is retired.
    mutating func restart(epoch e: UInt64) {
        guard e != epoch else { return }
        retired = max(retired, epoch)
        epoch = e
        highest = 0
        seen = 0
    }
}

/// The windows of every sender a node hears datagrams from, bounded: past `limit` senders the
/// table starts afresh (a replay then gets through once per sender at most, and its stale news
/// loses to SWIM's precedence anyway).
struct ReplayWindows: Sendable {
    static let limit = 8192
    private var windows: [String: ReplayWindow] = [:]

    /// The sender restarted, as its HELLO says (`ReplayWindow.restart`).
    mutating func restart(_ sender: String, epoch: UInt64) {
        if windows[sender] == nil {
            if windows.count >= Self.limit { windows = [:] }
            var w = ReplayWindow(epoch: epoch, sequence: 0)
            w.restart(epoch: epoch)
            windows[sender] = w
        }
        windows[sender]!.restart(epoch: epoch)
    }

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
