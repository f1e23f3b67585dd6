import Infoset
import Synchronization
@testable import ServiceKernel
import StandardServices
import Testing
import TestKit

/// What the kernel counts for `/metrics`, read in the text format Prometheus scrapes.
@Suite(.bounded) struct NodeMetricsTests {
    func text(_ k: Kernel) -> String { String(decoding: k.metrics.exposition(), as: UTF8.self) }

    @Test func requestsAndFaultsAreCountedByServiceAndVerb() async throws {
        let k = try await makeKernel()
        for _ in 0..<3 { _ = try await k.call(.update, "/counter", body: increment(1)) }
        _ = await k.send(Message(.update, to: "/counter", body: Element("Nonsense")), as: .system)
        _ = await k.send(Message(.get, to: "/no-such-service-\(UInt64.random(in: 0...UInt64.max))"), as: .system)
        let t = text(k)
        #expect(t.contains(#"decos_requests_total{service="/counter",verb="Update"} 4"#), "\(t)")
        #expect(t.contains(#"decos_faults_total{service="/counter",verb="Update"} 1"#))
        #expect(t.contains(#"decos_dispatch_duration_seconds_count{service="/counter",verb="Update"} 4"#))
        // A path nobody has is not a series of its own: clients could make any number of them.
        #expect(t.contains(#"decos_requests_total{service="(unknown)",verb="Get"} 1"#))
        #expect(!t.contains("no-such-service"))
    }

    @Test func latenciesFillTheHistogramsBucketsAndSum() async throws {
        let k = try await makeKernel()
        let reg = try #require(k.uris.lookup("/counter"))
        k.metrics.dispatched(reg, .get, faulted: false, took: 75_000)
        k.metrics.dispatched(reg, .get, faulted: true, took: 20_000_000_000)
        let t = text(k)
        let series = #"service="/counter",verb="Get""#
        // Buckets count the calls at or under their bound: none under 50 µs, the first from 100 µs,
        // both only past every bound.
        #expect(t.contains("decos_dispatch_duration_seconds_bucket{\(series),le=\"5e-05\"} 0\n"), "\(t)")
        #expect(t.contains("decos_dispatch_duration_seconds_bucket{\(series),le=\"0.0001\"} 1\n"))
        #expect(t.contains("decos_dispatch_duration_seconds_bucket{\(series),le=\"10.0\"} 1\n"))
        #expect(t.contains("decos_dispatch_duration_seconds_bucket{\(series),le=\"+Inf\"} 2\n"))
        #expect(t.contains("decos_dispatch_duration_seconds_sum{\(series)} 20.000075\n"))
        #expect(t.contains("decos_faults_total{\(series)} 1\n"))
        // Each family is written once, its series under it.
        #expect(t.components(separatedBy: "# TYPE decos_dispatch_duration_seconds histogram").count == 2)
    }

    @Test func labelValuesAreEscaped() {
        #expect(CallFamilies.render([("service", #"/a"b\c"#), ("verb", "line\nbreak\r\n")]) == #"{service="/a\"b\\c",verb="line\nbreak\#r\n"}"#)
    }

    @Test func aDroppedServicesSeriesGo() async throws {
        let k = try await makeKernel()
        try await k.create(ServiceConfig(contract: Counter.contract, name: "/brief"))
        _ = try await k.call(.get, "/brief")
        #expect(text(k).contains(#"service="/brief""#))
        try await k.drop("/brief")
        #expect(!text(k).contains(#"service="/brief""#))
    }

    @Test func aCountKeptElsewhereIsMirroredByWhatItGrew() {
        let m = NodeMetrics()
        let count = Atomic(0)
        m.onScrape { $0.mirror("decos_process_restarts_total", [("process", "p")], total: count.load(ordering: .relaxed)) }
        #expect(String(decoding: m.exposition(), as: UTF8.self).contains("decos_process_restarts_total") == false)
        count.store(2, ordering: .relaxed)
        _ = m.exposition()
        count.store(5, ordering: .relaxed)
        #expect(String(decoding: m.exposition(), as: UTF8.self).contains(#"decos_process_restarts_total{process="p"} 5"#))
        // The keeper started over (counted 1 since): the counter only grows, by that 1.
        count.store(1, ordering: .relaxed)
        #expect(String(decoding: m.exposition(), as: UTF8.self).contains(#"decos_process_restarts_total{process="p"} 6"#))
    }

    @Test func offCountsNothing() async throws {
        let k = Kernel(node: "n1", security: SecurityManager(policy: nil, exposed: false), contracts: StandardContracts.all,
                       metrics: NodeMetrics(enabled: false))
        try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
        _ = try await k.call(.get, "/counter")
        #expect(!text(k).contains("decos_requests_total"))
    }
}

/// The clock calls are timed with reads the same time as CLOCK_MONOTONIC.
@Suite(.bounded) struct CallClockTests {
    @Test func ticksTurnedIntoNanosecondsAgreeWithTheMonotonicClock() throws {
        guard CallClock.scale != 0 else {
            // No counter the kernel trusts: calls are timed with CLOCK_MONOTONIC itself.
            #expect(CallClock.nanoseconds(1234) == 1234)
            return
        }
        let start = try #require(CallClock.reading())
        while CallClock.monotonic() - start.ns < 20_000_000 {}
        let end = try #require(CallClock.reading())
        let measured = Double(CallClock.nanoseconds(Int64(end.ticks - start.ticks))), actual = Double(end.ns - start.ns)
        #expect(abs(measured - actual) / actual < 0.01, "\(measured) ns by the call clock (scale \(CallClock.scale)) against \(actual) ns")
        #expect(CallClock.nanoseconds(-5) <= 0)
    }
}
