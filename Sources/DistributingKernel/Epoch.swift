#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A node's boot epoch (docs/wire.md, "A node's identity"): a number above every one an earlier
/// life of the node used, so that peers tell a restarted node from its old self at once. It is the
/// wall clock at boot in milliseconds, which only a clock set back across a restart could break
/// (the appliance's data disk will keep a counter beside it, issue 22's storage).
///
/// The epoch rides in the high bits of the two numbers peers already order a node by: its
/// membership incarnation (`epoch << 20`: a million refutations per life) and its directory
/// version (`epoch << 22`). So a restarted node's first incarnation outbids every rumour about
/// its old self, a replayed "dead" of its old life changes nothing, and its new table replaces
/// the old one at once; no peer needs to know epochs apart from these numbers.
public enum Epoch {
    static let incarnationShift: UInt64 = 20
    static let versionShift: UInt64 = 22
    /// Epochs are kept below this (year 2109), so `epoch << 20` stays under the incarnation limit.
    static let limit: UInt64 = 1 << 42

    /// Milliseconds since 1970, now.
    public static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return min(UInt64(max(t.tv_sec, 0)) * 1000 + UInt64(max(t.tv_nsec, 0)) / 1_000_000, limit - 1)
    }

    static func firstIncarnation(_ epoch: UInt64) -> UInt64 { min(epoch, limit - 1) << incarnationShift }
    static func firstVersion(_ epoch: UInt64) -> UInt64 { min(epoch, limit - 1) << versionShift }
    static func of(incarnation: UInt64) -> UInt64 { incarnation >> incarnationShift }
}
