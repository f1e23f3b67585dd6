import Addresses
import Decos
import Logging
import NIOCore
import ProcessKernel
import ServiceKernel
import StandardServices
import Synchronization
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the command line (hosted) or the kernel command line (PID 1) sets over the manifest.
struct Overrides {
    var http: String?
    var node: String?
    var listen: String?
    var seeds: [String] = []
    var clusterKey: String?
    /// Data planes offered, in order: "rdma,tcp".
    var dataPlanes: String?
    /// Where log lines are forwarded: "udp://HOST:PORT".
    var syslog: String?
    /// Where durable services keep their state (a relative path is taken from the working directory).
    var data: String?

    /// Applies what is valid; returns a message for each value that is not.
    func apply(to m: inout Manifest) -> [String] {
        var problems: [String] = []
        if let http {
            if let (host, port) = parseHostPort(http) {
                var b = m.gateway ?? GatewayBinding()
                b.host = host
                b.port = port
                m.gateway = b
            } else { problems.append("http address \(http) is not HOST:PORT") }
        }
        if let node { m.node = node }
        if let data {
            if data.hasPrefix("/") { m.storage = data } else if let cwd = getcwd(nil, 0) {
                m.storage = String(cString: cwd) + "/" + data
                free(cwd)
            } else {
                problems.append("data \(data): the working directory cannot be read (\(String(cString: strerror(errno)))); give an absolute path")
            }
        }
        if let syslog {
            if SyslogForwarder.parse(syslog) != nil { m.syslog = syslog } else { problems.append("syslog \(syslog) is not udp://HOST:PORT") }
        }
        if listen != nil || !seeds.isEmpty || clusterKey != nil || dataPlanes != nil {
            var c = m.cluster ?? ClusterBinding()
            if let listen {
                if let (host, port) = parseHostPort(listen) { c.host = host; c.port = port }
                else { problems.append("listen address \(listen) is not HOST:PORT") }
            }
            let good = seeds.filter { parseHostPort($0) != nil }
            for s in seeds where !good.contains(s) { problems.append("seed \(s) is not HOST:PORT") }
            if !good.isEmpty { c.seeds = good }
            if let clusterKey { c.keyFile = clusterKey }
            if let dataPlanes {
                if let planes = ClusterBinding.planes(dataPlanes) { c.dataPlanes = planes }
                else { problems.append("dataplane \"\(dataPlanes)\" must name \(ClusterBinding.planesRule)") }
            }
            m.cluster = c
        }
        return problems
    }
}

/// Serving a booted node until something asks it to end, the same way hosted and as PID 1.
enum NodeRunner {
    static func readyLine(_ node: Node) -> String {
        var line = "decos: node \(node.kernel.node) ready with \(node.kernel.uris.entries.count) services"
        if let a = node.clusterAddress { line += "; cluster on \(hostPort(a))" }
        if let a = node.httpAddress { line += "; serving \(node.manifest.gateway?.tls == true ? "https" : "http")://\(hostPort(a))/" }
        if node.httpAddress == nil && node.clusterAddress == nil { line += "; local only (no network binding)" }
        return line
    }

    /// Serves until a power request (`/os/node` Submit, or a signal) and returns which one came, once
    /// services are dropped and processes stopped; nil when the node stopped by itself on an error.
    static func serve(_ node: Node) async -> PowerAction? {
        let task = Task { try await node.run() }
        let requested = PowerRequest()
        let end: @Sendable (PowerAction) -> Void = { action in if requested.set(action) { task.cancel() } }
        node.os.onPower { action in
            print("decos: \(action.rawValue) requested through /os/node")
            // The gateway answers the request before the node stops (`Gateway.serve` drains).
            end(action)
        }
        InitProcess.onPowerSignals { action, signal in
            print("decos: \(signal): \(action.rawValue)")
            end(action)
        }
        do { try await task.value } catch where !(error is CancellationError) {
            print("decos: node stopped: \(error)")
            return nil
        } catch {}
        return requested.action ?? .poweroff
    }
}

/// The first power action asked for; later ones change nothing.
final class PowerRequest: Sendable {
    private let value = Mutex<PowerAction?>(nil)
    var action: PowerAction? { value.withLock { $0 } }
    /// True for the first request.
    func set(_ a: PowerAction) -> Bool {
        value.withLock { v in
            guard v == nil else { return false }
            v = a
            return true
        }
    }
}

func bootstrapLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var h = LogBookHandler(label: label)
        h.logLevel = level
        return h
    }
}

/// The supervisor of a node's processes: what it does and what they write is logged as the
/// node's own lines are (console, `/os/log`, syslog), each output line under `NAME:stdout` or
/// `NAME:stderr`.
func nodeSupervisor() -> Supervisor {
    let logger = Logger(label: "process")
    return Supervisor(log: { logger.notice("\($0)", source: "Supervisor") },
                      output: { logger.info("\($0.line)", source: "\($0.process):\($0.stream.rawValue)") })
}

/// A secret from a file, trimmed; nil when unreadable or shorter than 16 characters.
func readSecret(_ path: String) -> String? {
    guard let bytes = readFile(path) else { return nil }
    let s = String(decoding: bytes, as: UTF8.self).trimmingXMLSpace()
    return s.utf8.count >= 16 ? s : nil
}
