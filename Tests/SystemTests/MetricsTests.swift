import Foundation
import Testing
import TestKit

let canRunPrometheus = FileManager.default.isExecutableFile(atPath: "/usr/bin/prometheus")

/// A real Prometheus server (Debian's) on a loopback port, scraping the given targets every
/// second; `query` asks its HTTP API.
final class Prometheus {
    let dir = NSTemporaryDirectory() + "decos-prometheus-\(UUID().uuidString)"
    let port = freeLoopbackPort(SOCK_STREAM)
    let process = Process()
    var base: String { "http://127.0.0.1:\(port)" }

    init(scraping targets: [String]) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try """
        global:
          scrape_interval: 1s
          scrape_timeout: 900ms
        scrape_configs:
          - job_name: decos
            static_configs:
              - targets: [\(targets.map { "'\($0)'" }.joined(separator: ", "))]
        """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        process.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
                             "--web.listen-address=127.0.0.1:\(port)"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        _ = try waitFor("Prometheus ready on 127.0.0.1:\(port)", within: 60) {
            (try? curl("-o", "/dev/null", "-w", "%{http_code}", base + "/-/ready").out) == "200"
        }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// An instant PromQL query: each series' labels and value.
    func query(_ promql: String) throws -> [(labels: [String: String], value: Double)] {
        let r = try curl("-G", base + "/api/v1/query", "--data-urlencode", "query=" + promql)
        guard let json = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any],
              json["status"] as? String == "success", let data = json["data"] as? [String: Any],
              let result = data["result"] as? [[String: Any]] else { throw Failure("Prometheus answered \(promql) with \(r.out)\(r.err)") }
        return result.map { series in
            let value = (series["value"] as? [Any])?.last as? String
            return (series["metric"] as? [String: String] ?? [:], value.flatMap(Double.init) ?? .nan)
        }
    }

    /// The query's values by one label, e.g. by node.
    func values(_ promql: String, by label: String) throws -> [String: Double] {
        Dictionary(try query(promql).map { ($0.labels[label] ?? "", $0.value) }, uniquingKeysWith: { a, _ in a })
    }
}

/// `GET /metrics` on every node, scraped by a real Prometheus: the series a fleet's dashboards
/// and alerts are built on, with the values the cluster's traffic should give them.
@Suite(.bounded, .ownThreads, .serialized, .enabled(if: canRunPrometheus, "needs prometheus (make deps installs it)"))
struct MetricsTests {
    @Test func prometheusScrapesAThreeNodeClusterAndPromQLSeesItsCallsAndMembers() throws {
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "b"])
        let c = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "c"])
        let all: Set = ["decos://a/counter", "decos://b/counter", "decos://c/counter"]
        try waitFor("a condition", within: 60) { try a.counters() == all && b.counters() == all && c.counters() == all }
        // Three Updates of c's counter through a's gateway (remote calls a → c), two of b's at b.
        for _ in 0..<3 { #expect(try decos("ctl", "update", a.base + "/@c/counter", "--body", "<Increment><By>1</By></Increment>").status == 0) }
        for _ in 0..<2 { #expect(try decos("ctl", "update", b.base + "/counter", "--body", "<Increment><By>1</By></Increment>").status == 0) }
        // And one to a service nobody has: a fault, counted under no name of its own.
        #expect(try curl("-o", "/dev/null", "-w", "%{http_code}", a.base + "/no-such-service").out == "404")

        let prometheus = try Prometheus(scraping: [a, b, c].map { String($0.base.dropFirst("http://".count)) })
        // By node: the instance's decos_node_info gives each series its node's name.
        let byNode = " * on(instance) group_left(node) decos_node_info"
        _ = try waitFor("Prometheus has scraped all three nodes", within: 30) {
            try prometheus.values("up{job=\"decos\"}" + " * on(instance) group_left(node) decos_node_info", by: "node") == ["a": 1, "b": 1, "c": 1]
        }
        #expect(try prometheus.values("sum by (instance, node) (decos_requests_total{service=\"/counter\",verb=\"Update\"}\(byNode))", by: "node")
                == ["b": 2, "c": 3])
        #expect(try prometheus.values("decos_remote_calls_total{peer=\"c\",verb=\"Update\"}\(byNode)", by: "node") == ["a": 3])
        #expect(try prometheus.values("decos_remote_faults_total{peer=\"c\",verb=\"Update\"}\(byNode)", by: "node") == ["a": 0])
        #expect(try prometheus.values("decos_faults_total{service=\"(unknown)\",verb=\"Get\"}\(byNode)", by: "node") == ["a": 1])
        // Each node sees the three members alive, itself included, and none suspect.
        #expect(try prometheus.values("decos_members{status=\"alive\"}\(byNode)", by: "node") == ["a": 3, "b": 3, "c": 3])
        #expect(try prometheus.values("decos_members{status=\"suspect\"}\(byNode)", by: "node") == ["a": 0, "b": 0, "c": 0])
        // Latency histograms Prometheus can take quantiles of; a remote call takes longer than none.
        let p99 = try prometheus.values("histogram_quantile(0.99, decos_remote_call_duration_seconds_bucket{peer=\"c\",verb=\"Update\"}\(byNode))", by: "node")
        #expect(p99["a"].map { $0 > 0 && $0 <= 10 } == true, "\(p99)")
        #expect(try prometheus.values("decos_dispatch_duration_seconds_count{service=\"/counter\",verb=\"Update\"}\(byNode)", by: "node")["c"] == 3)
        // Memory and boot, on every node.
        #expect(try prometheus.values("(process_resident_memory_bytes > 1e6)\(byNode)", by: "node").count == 3)
        #expect(try prometheus.values("decos_boot_phase_seconds{phase=\"services\"}\(byNode)", by: "node").count == 3)
        #expect(try prometheus.values("(decos_buffer_pool_bytes{state=\"limit\"} > 0)\(byNode)", by: "node").count == 3)

        // A node killed: the survivors count it dead, which an alert on decos_members can see.
        kill(c.process.processIdentifier, SIGKILL)
        _ = try waitFor("a and b count c dead", within: 30) {
            try prometheus.values("decos_members{status=\"dead\"}\(byNode)", by: "node") == ["a": 1, "b": 1]
        }
        #expect(try prometheus.values("decos_membership_changes_total{status=\"dead\"}\(byNode)", by: "node") == ["a": 1, "b": 1])
    }

    @Test func metricsAreTheNodesStateAndAskTheSameRightsAsIt() throws {
        let manifest = NSTemporaryDirectory() + "decos-metrics-\(UUID().uuidString).xml"
        try """
        <Manifest xmlns="urn:decos:manifest">
          <Security>
            <Token name="ops" secret="metrics-test-secret"/>
            <Allow principals="token:ops"/>
            <Allow principals="anonymous" verbs="Get" paths="/counter"/>
          </Security>
          <Service contract="urn:decos:examples:counter" name="/counter"/>
        </Manifest>
        """.write(toFile: manifest, atomically: true, encoding: .utf8)
        let node = try NodeProcess(manifest: manifest)
        // Anonymous clients may read /counter but not the node's own state: nor its metrics.
        #expect(try curl("-o", "/dev/null", "-w", "%{http_code}", node.base + "/counter").out == "200")
        let denied = try curl("-w", "\n%{http_code}", node.base + "/metrics").out
        #expect(denied.hasSuffix("\n400") && denied.contains("may not Get /os/node"), "\(denied)")
        #expect(!denied.contains("decos_requests_total"))
        // The token that may read it gets the text format, the anonymous Get of /counter counted.
        let allowed = try curl("-i", "-H", "Authorization: Bearer metrics-test-secret", node.base + "/metrics").out
        #expect(allowed.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), "\(allowed.prefix(300))")
        #expect(allowed.contains("decos_requests_total{service=\"/counter\",verb=\"Get\"} 1\n"), "\(allowed)")
        #expect(allowed.contains("decos_faults_total{service=\"/os/node\",verb=\"Get\"}") == false)
    }
}
