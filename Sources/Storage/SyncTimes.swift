#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// How long a journal's commits took to reach the disk: the last 1,024, for percentiles, and the
/// count and sum of all of them.
public final class SyncTimes: Sendable {
    private struct State {
        var recent = [Int64](repeating: 0, count: SyncTimes.kept)
        var count = 0
        var total: Int64 = 0
    }
    static let kept = 1024
    private let state = Mutex(State())

    public init() {}

    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
    }

    func record(_ nanoseconds: Int64) {
        state.withLock { s in
            s.recent[s.count % Self.kept] = nanoseconds
            s.count += 1
            s.total &+= nanoseconds
        }
    }

    /// Commits so far and their total time in nanoseconds.
    public var totals: (count: Int, nanoseconds: Int64) { state.withLock { ($0.count, $0.total) } }

    /// The `q` quantile (0…1) of the recent commits' times in nanoseconds; nil before the first.
    public func quantile(_ q: Double) -> Int64? {
        let recent = state.withLock { s in Array(s.recent.prefix(min(s.count, Self.kept))) }.sorted()
        guard !recent.isEmpty else { return nil }
        return recent[min(recent.count - 1, Int(Double(recent.count) * q))]
    }
}
