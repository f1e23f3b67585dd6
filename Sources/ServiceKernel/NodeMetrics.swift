import CoreMetrics
import ProcessKernel
import Prometheus
import Synchronization

/// The node's metrics, for `GET /metrics`: the calls of each service and peer counted by the
/// node's own meters (CallMeters.swift), and the rest as instruments made through swift-metrics on
/// a Prometheus registry of the node's own; both written out in the Prometheus text format.
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
    /// The series of each peer and verb, and of `(unknown)`, made on first use. A service's are
    /// kept by its registration (`VerbMeters`), listed here once it is first called, and go with it.
    private let calls = Mutex<[Calls: CallMeter]>([:])
    private let services = Mutex<[ObjectIdentifier: VerbMeters]>([:])
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

        var labels: [(String, String)] {
            switch self {
            case .service(let path, let verb): [("service", path), ("verb", verb.rawValue)]
            case .peer(let node, let verb): [("peer", node), ("verb", verb.rawValue)]
            }
        }
    }

    static let serviceFamilies = CallFamilies(calls: "decos_requests_total", faults: "decos_faults_total", duration: "decos_dispatch_duration_seconds")
    static let peerFamilies = CallFamilies(calls: "decos_remote_calls_total", faults: "decos_remote_faults_total", duration: "decos_remote_call_duration_seconds")

    private func meter(_ c: Calls) -> CallMeter {
        calls.withLock { made in
            if let m = made[c] { return m }
            let m = CallMeter(labels: c.labels)
            made[c] = m
            return m
        }
    }

    /// A request to the service `reg` (nil: a path nobody has) ended after `took` nanoseconds,
    /// answered or faulted.
    func dispatched(_ reg: Registration?, _ verb: Verb, faulted: Bool, took: Int64) {
        guard enabled else { return }
        guard let reg else { return meter(.service("(unknown)", verb)).count(faulted: faulted, nanoseconds: took) }
        let meters = reg.meters
        if !meters.listed.load(ordering: .relaxed) {
            // Under the lock `forget` takes, so a call ending after its service was dropped cannot
            // list the series again.
            services.withLock { listed in
                guard !meters.listed.load(ordering: .relaxed) else { return }
                meters.listed.store(true, ordering: .relaxed)
                listed[ObjectIdentifier(meters)] = meters
            }
        }
        meters[verb].count(faulted: faulted, nanoseconds: took)
    }

    /// A call to the member `peer` ended after `took`, answered or faulted.
    public func remoteCall(peer: String, _ verb: Verb, faulted: Bool, took: Duration) {
        guard enabled else { return }
        meter(.peer(peer, verb)).count(faulted: faulted, took: took)
    }

    /// The service `reg` was dropped: its series go (a service made again starts from 0, which
    /// Prometheus reads as a counter reset).
    func forget(_ reg: Registration) {
        services.withLock { listed in
            // Marked listed: a call that ends after the drop does not list them again.
            reg.meters.listed.store(true, ordering: .relaxed)
            listed[ObjectIdentifier(reg.meters)] = nil
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
        let (own, others) = (services.withLock { $0.values.flatMap(\.all) }, calls.withLock { Array($0) })
        Self.serviceFamilies.write(own + others.filter { if case .service = $0.key { true } else { false } }.map(\.value), into: &out)
        Self.peerFamilies.write(others.filter { if case .peer = $0.key { true } else { false } }.map(\.value), into: &out)
        return out
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}

/// A service's series, one a verb, made with its registration: counting takes no lookup and no
/// lock but the series' own. Only those called are written out.
final class VerbMeters: Sendable {
    private static let verbs = Verb.allCases
    private let meters: [CallMeter]
    /// Whether the node's metrics list them yet (from the first call), or did (until the drop);
    /// changed only under `NodeMetrics.services`' lock.
    let listed = Atomic<Bool>(false)

    init(path: String) {
        meters = Self.verbs.map { CallMeter(labels: NodeMetrics.Calls.service(path, $0).labels) }
    }

    subscript(verb: Verb) -> CallMeter { meters[Self.verbs.firstIndex(of: verb)!] }

    var all: [CallMeter] { meters }
}
