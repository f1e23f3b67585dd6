/// The sender's side of one AF_XDP transfer's reliability: which chunks to send now, what the
/// receiver has acknowledged, what to send again. Pure state, driven by the port thread's clock
/// (microseconds) and the receiver's ACKs, so it is tested without a network.
///
/// - Chunks go out in order within a congestion window (`cwnd`, in chunks): slow start, then one
///   more per window acknowledged; halved when a loss is seen, back to `minimumWindow` on a
///   timeout (Reno's rules, counted in chunks).
/// - The receiver's ACK says every chunk below its cumulative point is there, and SACK bits name
///   chunks past it. Frames on one Ethernet segment do not overtake each other, so a chunk is
///   lost once a chunk sent after it (by more than a quarter of the round trip) has arrived, and
///   is sent again at once (RACK's rule, RFC 8985, which also finds a resent chunk lost again).
/// - If a chunk on the wire waits longer than the retransmission timeout (Jacobson's estimate
///   from round trips of chunks sent once, Karn's rule; doubled on each timeout), every chunk
///   not acknowledged is sent again, in order.
/// - At most `span` chunks are between the cumulative point and the next new chunk, so per-chunk
///   state is a ring of that many slots.
struct XDPWindow {
    /// Within what one ACK's SACK bits cover past its cumulative point: a chunk that landed is
    /// never one the sender cannot hear of. (512 chunks of a 1500-byte MTU are 750 KB in flight.)
    static let span = 64 * XDPWire.maxSackWords
    static let initialWindow = 32.0
    static let minimumWindow = 4.0
    static let initialTimeout: UInt64 = 50_000
    static let minimumTimeout: UInt64 = 5_000
    static let maximumTimeout: UInt64 = 1_000_000

    let total: Int
    /// Every chunk below it is acknowledged.
    private(set) var acked = 0
    /// The next chunk never sent.
    private(set) var next = 0
    private(set) var cwnd = initialWindow
    private var ssthresh = Double(span)
    /// Until the cumulative point passes it, another loss does not shrink the window again.
    private var recoveryEnd = 0
    private(set) var timeout = initialTimeout
    private var srtt: Double?
    private var rttvar = 0.0

    private struct Slot {
        var sentAt: UInt64 = 0
        var sacked = false
        var queued = false
        var resent = false
    }
    private var slots = [Slot](repeating: Slot(), count: span)
    private var sackedCount = 0
    /// Chunks to send again, oldest first (a chunk in it may since have been acknowledged).
    private var resend: [Int] = []
    /// Where in `resend` the next one is (taken from the front without moving the rest).
    private var resendHead = 0
    private var queuedCount = 0
    /// Chunks sent again, and timeouts, for the plane's counters and log.
    private(set) var retransmitted = 0
    private(set) var timeouts = 0
    /// The smoothed round trip, in microseconds (0 before the first).
    var roundTrip: Int { Int(srtt ?? 0) }

    init(total: Int) { self.total = total }

    var done: Bool { acked == total }

    /// Chunks on the wire: sent, not acknowledged, not SACKed, not given up as lost.
    var inFlight: Int { next - acked - sackedCount - queuedCount }

    private func slot(_ chunk: Int) -> Int { chunk % Self.span }

    /// The chunks to send now, at most `max`: those to send again first, then new ones, as the
    /// window allows. Each is stamped as sent at `now`.
    mutating func take(now: UInt64, max: Int) -> [Int] {
        var out: [Int] = []
        while out.count < max, Double(inFlight) < cwnd {
            if let c = popResend() {
                slots[slot(c)].sentAt = now
                slots[slot(c)].resent = true
                retransmitted += 1
                out.append(c)
            } else if next < total, next - acked < Self.span {
                slots[slot(next)] = Slot(sentAt: now)
                out.append(next)
                next += 1
            } else {
                break
            }
        }
        return out
    }

    private mutating func popResend() -> Int? {
        while resendHead < resend.count {
            let c = resend[resendHead]
            resendHead += 1
            if resendHead == resend.count { resend.removeAll(keepingCapacity: true); resendHead = 0 }
            guard c >= acked, slots[slot(c)].queued else { continue }
            slots[slot(c)].queued = false
            queuedCount -= 1
            if !slots[slot(c)].sacked { return c }
        }
        return nil
    }

    private mutating func queue(_ c: Int) {
        guard !slots[slot(c)].queued, !slots[slot(c)].sacked else { return }
        slots[slot(c)].queued = true
        queuedCount += 1
        resend.append(c)
    }

    /// Takes in an ACK; true if it moved the transfer on (the cumulative point or a new SACK).
    /// An ACK that claims chunks never sent is ignored.
    @discardableResult
    mutating func ack(cumulative: UInt64, sack: [UInt64], now: UInt64) -> Bool {
        guard cumulative <= UInt64(next) else { return false }
        let cum = Int(cumulative)
        var newly = 0
        /// When the latest-sent chunk this ACK says arrived was sent.
        var delivered: UInt64 = 0
        if cum > acked {
            let last = slots[slot(cum - 1)]
            // New data acknowledged ends a backoff (as Linux does): the timeout is the estimate's again.
            if !last.resent, now >= last.sentAt { sample(Double(now - last.sentAt)) } else { timeout = estimate }
            for c in acked..<cum {
                let s = slots[slot(c)]
                if s.sacked { sackedCount -= 1 } else {
                    newly += 1
                    delivered = max(delivered, s.sentAt)
                }
                if s.queued { queuedCount -= 1 }
                slots[slot(c)] = Slot()
            }
            acked = cum
        }
        for (w, word) in sack.enumerated() where word != 0 {
            for bit in 0..<64 where word & (1 << UInt64(bit)) != 0 {
                let c = cum + 1 + 64 * w + bit
                guard c < next else { break }
                if !slots[slot(c)].sacked {
                    delivered = max(delivered, slots[slot(c)].sentAt)
                    if slots[slot(c)].queued {
                        slots[slot(c)].queued = false
                        queuedCount -= 1
                    }
                    slots[slot(c)].sacked = true
                    sackedCount += 1
                    newly += 1
                }
            }
        }
        // Lost: on the wire still, and sent a while before a chunk that has arrived.
        var lost = false
        if delivered > 0 {
            let reordering = UInt64((srtt ?? 0) / 4)
            for c in acked..<next {
                let s = slots[slot(c)]
                if !s.sacked, !s.queued, s.sentAt + reordering < delivered {
                    queue(c)
                    lost = true
                }
            }
        }
        if lost, acked >= recoveryEnd {
            ssthresh = max(cwnd / 2, Self.minimumWindow)
            cwnd = ssthresh
            recoveryEnd = next
        } else if newly > 0 {
            cwnd = min(cwnd < ssthresh ? cwnd + Double(newly) : cwnd + Double(newly) / cwnd, Double(Self.span))
        }
        return newly > 0
    }

    /// Jacobson's estimator; the timeout is the mean plus four deviations, within bounds.
    private mutating func sample(_ rtt: Double) {
        if let s = srtt {
            rttvar = 0.75 * rttvar + 0.25 * abs(s - rtt)
            srtt = 0.875 * s + 0.125 * rtt
        } else {
            srtt = rtt
            rttvar = rtt / 2
        }
        timeout = estimate
    }

    /// The timeout the round trips measured so far give.
    private var estimate: UInt64 {
        guard let srtt else { return Self.initialTimeout }
        return min(max(UInt64(srtt + 4 * rttvar), Self.minimumTimeout), Self.maximumTimeout)
    }

    /// If a chunk on the wire has waited past the timeout for its acknowledgement: every chunk
    /// on the wire is queued to be sent again, the window collapses and the timeout doubles.
    /// True if that happened.
    mutating func expire(now: UInt64) -> Bool {
        guard inFlight > 0 else { return false }
        // The oldest on the wire is not always the lowest: a chunk sent again is younger than
        // those after it.
        var c = acked, expired = false
        while c < next, !expired {
            let s = slots[slot(c)]
            expired = !s.sacked && !s.queued && now >= s.sentAt + timeout
            c += 1
        }
        guard expired else { return false }
        timeouts += 1
        for c in acked..<next { queue(c) }
        ssthresh = max(cwnd / 2, Self.minimumWindow)
        cwnd = Self.minimumWindow
        recoveryEnd = next
        timeout = min(timeout * 2, Self.maximumTimeout)
        return true
    }
}
