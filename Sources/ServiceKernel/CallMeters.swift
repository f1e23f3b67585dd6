#if canImport(Glibc)
import Glibc
#endif
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

    /// Nanoseconds on the monotonic clock: what a call's time is measured with. Not
    /// `ContinuousClock.now`: its `Instant` is not a frozen type, so each one held across an await
    /// takes two allocations from the task allocator (four on a local call's path).
    @inline(__always)
    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) &* 1_000_000_000 &+ Int64(t.tv_nsec)
    }

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
