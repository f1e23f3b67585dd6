#if canImport(Glibc)
import Glibc
#endif

/// Lifeguard's two local-health mechanisms (Dadgar, Phillips, Currey: "Lifeguard: Local Health
/// Awareness for More Accurate Failure Detection", arXiv 1707.00788), as memberlist runs them. A node
/// that is itself slow, or losing packets, sees its probes fail and would suspect healthy members:
/// the health score makes it probe more slowly (so indirect probes and nacks have time to come back),
/// and suspicion waits longer while no other member confirms it.
struct LocalHealth: Sendable, Hashable {
    /// 0 is healthy; each point stretches the probe interval by one more interval.
    private(set) var score = 0
    let limit: Int

    init(limit: Int) { self.limit = max(0, limit) }

    /// A probe was answered (directly or through a relay): evidence that this node hears others.
    mutating func probeSucceeded() { score = max(0, score - 1) }

    /// A probe went unanswered. Relays that answered with a nack heard the target was silent, which
    /// is no fault of ours; each relay that said nothing at all is a point against our own health,
    /// and with no relays asked the failure itself is one.
    mutating func probeFailed(relaysAsked: Int, nacks: Int) {
        bump(relaysAsked > 0 ? max(0, relaysAsked - nacks) : 1)
    }

    /// Someone suspected this node while it was alive: its messages are not getting through.
    mutating func refuted() { bump(1) }

    private mutating func bump(_ delta: Int) { score = min(limit, score + delta) }

    /// `interval` stretched by the health score.
    func scale(_ interval: UInt64) -> UInt64 { interval * UInt64(score + 1) }
}

/// How long a suspect has before it is declared dead: `max` when only one member suspects it,
/// falling towards `min` as independent members confirm the suspicion (Lifeguard's LHA-Suspicion,
/// memberlist's `remainingSuspicionTime`): timeout = max − (max − min) · log(c + 1) / log(k + 1), where
/// c is the confirmations so far and k those expected. With none to expect (two or three members
/// and no one left to confirm), it is `min` from the start.
func suspicionTimeout(confirmations c: Int, expected k: Int, min: UInt64, max: UInt64) -> UInt64 {
    guard k > 0, max > min else { return min }
    let fraction = log2(Double(c + 1)) / log2(Double(k + 1))
    let t = Double(max) - fraction * Double(max - min)
    return t <= Double(min) ? min : UInt64(t)
}
