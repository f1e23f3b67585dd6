import CoreMetrics
import ProcessKernel
import Prometheus
import Synchronization

/// The node's metrics, for `GET /metrics`: instruments made through swift-metrics on a Prometheus
/// registry of the node's own, written out by swift-prometheus in the Prometheus text format.
///
/// The registry is the node's, not swift-metrics' process-wide `MetricsSystem`: that one can be
/// bootstrapped once per process, and tests run several nodes in one. What changes with each
/// request (requests, faults, latencies) is counted as it happens; what is state (members, pool
/// memory, counts another part keeps) is read when scraped, by the collectors parts add.
public final class NodeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public let factory: PrometheusMetricsFactory
    /// Off (`<Gateway metrics="off"/>`): nothing is counted as it happens, nothing is served.
    public let enabled: Bool
    private let collectors = Mutex<[@Sendable (NodeMetrics) -> Void]>([])
    /// The instruments of each peer and verb, and of `(unknown)`, made on first use (a registry
    /// lookup per call would render the labels every time). A service's are kept by its
    /// registration (`VerbMeters`) and go with it.
    private let calls = Mutex<[Calls: CallMeters]>([:])
    /// What `mirror` last added to each counter, by name and labels.
    private let mirrored = Mutex<[String: Int64]>([:])

    /// Latency buckets from 50 µs (a local call) to 10 s (a remote call's default timeout).
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    public init(enabled: Bool = true) {
        self.enabled = enabled
        var f = PrometheusMetricsFactory(registry: registry)
        f.defaultDurationHistogramBuckets = Self.latencyBuckets
        factory = f
    }

    // MARK: instruments

    public func counter(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
    }

    public func gauge(_ name: String, _ labels: [(String, String)] = []) -> Meter {
        Meter(label: name, dimensions: labels, factory: factory)
    }

    public func timer(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name, dimensions: labels, factory: factory)
    }

    /// Whom calls are counted by: a local service and the verb it was sent, or a peer a call
    /// went to and its verb.
    enum Calls: Hashable {
        case service(String, Verb)
        case peer(String, Verb)

        var names: (calls: String, faults: String, duration: String) {
            switch self {
            case .service: ("decos_requests_total", "decos_faults_total", "decos_dispatch_duration_seconds")
            case .peer: ("decos_remote_calls_total", "decos_remote_faults_total", "decos_remote_call_duration_seconds")
            }
        }

        var labels: [(String, String)] {
            switch self {
            case .service(let path, let verb): [("service", path), ("verb", verb.rawValue)]
            case .peer(let node, let verb): [("peer", node), ("verb", verb.rawValue)]
            }
        }
    }

    struct CallMeters {
        let calls: CoreMetrics.Counter
        let faults: CoreMetrics.Counter
        let duration: CoreMetrics.Timer

        func count(faulted: Bool, took: Duration) {
            calls.increment()
            if faulted { faults.increment() }
            duration.recordNanoseconds(took.inNanoseconds)
        }
    }

    private func make(_ c: Calls) -> CallMeters {
        let (n, l) = (c.names, c.labels)
        return CallMeters(calls: counter(n.calls, l), faults: counter(n.faults, l), duration: timer(n.duration, l))
    }

    private func meters(_ c: Calls) -> CallMeters {
        calls.withLock { made in
            if let m = made[c] { return m }
            let m = make(c)
            made[c] = m
            return m
        }
    }

    /// A request to the local service `reg` (nil where there is none: counted under `(unknown)`)
    /// ended after `took`. The registration keeps its instruments, so most requests find theirs
    /// without hashing the path.
    func dispatched(_ reg: Registration?, _ verb: Verb, faulted: Bool, took: Duration) {
        guard enabled else { return }
        let m = reg.map { r in r.meters.get(verb) { make(.service(r.path, verb)) } } ?? meters(.service("(unknown)", verb))
        m.count(faulted: faulted, took: took)
    }

    /// A call to the member `peer` ended after `took`, answered or faulted.
    public func remoteCall(peer: String, _ verb: Verb, faulted: Bool, took: Duration) {
        guard enabled else { return }
        meters(.peer(peer, verb)).count(faulted: faulted, took: took)
    }

    /// The service `reg` was dropped: its series go (a service made again starts from 0, which
    /// Prometheus reads as a counter reset).
    func forget(_ reg: Registration) {
        for m in reg.meters.made {
            m.calls.destroy()
            m.faults.destroy()
            m.duration.destroy()
        }
    }

    // MARK: what is read when scraped

    /// Adds a collector, run at each scrape before the registry is written out.
    public func onScrape(_ collect: @escaping @Sendable (NodeMetrics) -> Void) {
        collectors.withLock { $0.append(collect) }
    }

    /// Brings a counter up to `total`, a count kept elsewhere that only grows: adds what it grew
    /// since the last scrape. A total that fell (its keeper started over) is taken as the new start.
    public func mirror(_ name: String, _ labels: [(String, String)], total: Int) {
        let key = name + labels.map { "\u{0}\($0.0)=\($0.1)" }.joined()
        let total = Int64(total)
        let grew = mirrored.withLock { m -> Int64 in
            let before = m[key] ?? 0
            m[key] = total
            return total >= before ? total - before : total
        }
        if grew > 0 { counter(name, labels).increment(by: grew) }
    }

    /// The text format (version 0.0.4), every collector run first.
    public func exposition() -> [UInt8] {
        for collect in collectors.withLock({ $0 }) { collect(self) }
        var out: [UInt8] = []
        out.reserveCapacity(16 << 10)
        registry.emit(into: &out)
        return out
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// A service's instruments by verb, kept by its registration and made on first use.
final class VerbMeters: Sendable {
    private static let verbs = Verb.allCases
    private let slots = Mutex<[NodeMetrics.CallMeters?]>(Array(repeating: nil, count: VerbMeters.verbs.count))

    /// Those made so far.
    var made: [NodeMetrics.CallMeters] { slots.withLock { $0.compactMap { $0 } } }

    func get(_ verb: Verb, make: () -> NodeMetrics.CallMeters) -> NodeMetrics.CallMeters {
        let i = Self.verbs.firstIndex(of: verb)!
        return slots.withLock { s in
            if let m = s[i] { return m }
            let m = make()
            s[i] = m
            return m
        }
    }
}
