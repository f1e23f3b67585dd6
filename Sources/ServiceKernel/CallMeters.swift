#if canImport(Glibc)
import Glibc
#endif
import CDecosInit
import Infoset
import ProcessKernel
import Synchronization

/// The calls of one series — a service and verb, or a peer and verb: how many, how many faulted,
/// and how long they took, as a Prometheus histogram. Counted on every request, so it is counted
/// cheaply: one uncontended lock over plain integers (swift-metrics' counters and timer, with a
/// handler each and buckets compared as `Duration`s, cost a local call more than the call itself),
/// and written out in the text format only when scraped (`CallFamilies`).
final class CallMeter: Sendable {
    struct Counts {
        var calls = 0
        var faults = 0
        var nanoseconds: Int64 = 0
        /// Calls at or under each bound of `CallMeter.bounds`; the last slot, those over them all.
        var buckets = [Int](repeating: 0, count: CallMeter.bounds.count + 1)
    }

    /// The histogram's upper bounds in nanoseconds: `NodeMetrics.latencyBuckets`.
    static let bounds: [Int64] = NodeMetrics.latencyBuckets.map(\.inNanoseconds)

    let labels: [(String, String)]
    private let counts = Mutex(Counts())

    init(labels: [(String, String)]) { self.labels = labels }


    func count(faulted: Bool, took: Duration) { count(faulted: faulted, nanoseconds: took.inNanoseconds) }

    func count(faulted: Bool, nanoseconds: Int64) {
        let bucket = Self.bounds.firstIndex { nanoseconds <= $0 } ?? Self.bounds.count
        counts.withLock { c in
            c.calls += 1
            if faulted { c.faults += 1 }
            c.nanoseconds &+= nanoseconds
            c.buckets[bucket] += 1
        }
    }

    var snapshot: Counts { counts.withLock { $0 } }
}

/// The clock a local call is timed with: two reads a call, so it is read cheaply. Where the
/// kernel itself keeps time with the CPU's time-stamp counter (its clocksource is `tsc`: a
/// constant rate, in step on every core), that counter (rdtsc, ~9 ns here) in ticks, turned into
/// nanoseconds with a scale measured once against CLOCK_MONOTONIC; elsewhere CLOCK_MONOTONIC in
/// nanoseconds (~23 ns). Not `ContinuousClock.now`: its `Instant` is not a frozen type, so each
/// one held across an await takes two allocations from the task allocator.
enum CallClock {
    /// Nanoseconds per tick in 32.32 fixed point; 0 when ticks are nanoseconds (CLOCK_MONOTONIC).
    static let scale: UInt64 = calibrate()

    @inline(__always)
    static func now() -> Int64 {
        scale == 0 ? monotonic() : Int64(truncatingIfNeeded: decos_cycles())
    }

    /// The nanoseconds of `ticks` (the difference of two `now()`s).
    @inline(__always)
    static func nanoseconds(_ ticks: Int64) -> Int64 {
        guard scale != 0 else { return ticks }
        let (high, low) = UInt64(clamping: ticks).multipliedFullWidth(by: scale)
        return Int64(clamping: high << 32 | low >> 32)
    }

    static func monotonic() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
    }

    /// The counter's rate against CLOCK_MONOTONIC over 2 ms (once, when the kernel is made);
    /// 0 where the kernel does not trust the counter, or there is none. Each end is a reading of
    /// the monotonic clock between two of the counter, taken again until the two are close: a
    /// thread preempted between reading one clock and the other would skew the rate, but only at
    /// the ends, and those are checked.
    private static func calibrate() -> UInt64 {
        guard let source = readFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
              String(decoding: source, as: UTF8.self).hasPrefix("tsc"), decos_cycles() != 0 else { return 0 }
        guard let start = reading() else { return 0 }
        while monotonic() - start.ns < 2_000_000 {}
        guard let end = reading(), end.ticks > start.ticks else { return 0 }
        return (UInt64(end.ns - start.ns) << 32) / (end.ticks - start.ticks)
    }

    /// CLOCK_MONOTONIC and the counter read together: the monotonic clock between two readings
    /// of the counter less than 2,000 ticks apart (nil if that never happens in 100 tries).
    static func reading() -> (ns: Int64, ticks: UInt64)? {
        for _ in 0..<100 {
            let before = decos_cycles(), ns = monotonic(), after = decos_cycles()
            if after > before && after - before < 2000 { return (ns, before + (after - before) / 2) }
        }
        return nil
    }
}

/// The three families a kind of call is counted in, and their series, written out together as the
/// text format wants (each family's lines after its one `# TYPE` line).
struct CallFamilies {
    let calls: String, faults: String, duration: String

    func write(_ meters: [CallMeter], into out: inout [UInt8]) {
        let counted = meters.map { ($0.labels, $0.snapshot) }.filter { $0.1.calls > 0 }
        guard !counted.isEmpty else { return }
        var text = "# TYPE \(calls) counter\n"
        for (labels, c) in counted { text += "\(calls)\(Self.render(labels)) \(c.calls)\n" }
        text += "# TYPE \(faults) counter\n"
        for (labels, c) in counted { text += "\(faults)\(Self.render(labels)) \(c.faults)\n" }
        text += "# TYPE \(duration) histogram\n"
        for (labels, c) in counted {
            var cumulative = 0
            for (i, bound) in CallMeter.bounds.enumerated() {
                cumulative += c.buckets[i]
                text += "\(duration)_bucket\(Self.render(labels + [("le", "\(Double(bound) / 1e9)")])) \(cumulative)\n"
            }
            text += "\(duration)_bucket\(Self.render(labels + [("le", "+Inf")])) \(c.calls)\n"
            text += "\(duration)_sum\(Self.render(labels)) \(Double(c.nanoseconds) / 1e9)\n"
            text += "\(duration)_count\(Self.render(labels)) \(c.calls)\n"
        }
        out += Array(text.utf8)
    }

    /// `{name="value",…}`, each value escaped as the text format asks (backslash, quote, newline).
    static func render(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { name, value in "\(name)=\"\(value.escaping(labelEscapes))\"" }.joined(separator: ",") + "}"
    }

    private static let labelEscapes: [Unicode.Scalar: String] = ["\\": "\\\\", "\"": "\\\"", "\n": "\\n"]
}
