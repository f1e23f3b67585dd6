import DeviceDrivers
import DistributingKernel
import Gateway
import Infoset
import Logging
import NIOCore
import ProcessKernel
import ServiceKernel
import StandardServices
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The release this build is.
public enum DecosVersion {
    public static let string = "0.1.0"
}

/// The services every node runs, at the paths they always take: the standard ones and those of
/// the distributing kernel.
public enum SystemServices {
    public static let all: [(type: any Service.Type, path: String)] = StandardContracts.system + [
        (DataPlaneService.self, "/os/dataplane"),
        (ClusterService.self, "/os/cluster"),
    ]
    public static var contracts: Contracts { StandardContracts.all.merging(Contracts([DataPlaneService.self, ClusterService.self])) }
}

/// A running node: the service kernel with its system services, the gateway when the manifest
/// binds one, and the manifest's services, booted in the seed's order.
public final class Node: Sendable {
    public let manifest: Manifest
    public let kernel: Kernel
    public let gateway: Gateway?
    /// Where the gateway listens, once bound.
    public let httpAddress: SocketAddress?
    /// The network manager, when the manifest binds this node to a cluster.
    public let network: NetworkManager?
    public let clusterAddress: SocketAddress?
    /// The system under the node: supervised processes, devices, links, power.
    public let os: OperatingSystem

    private init(manifest: Manifest, kernel: Kernel, gateway: Gateway?, httpAddress: SocketAddress?,
                 network: NetworkManager?, clusterAddress: SocketAddress?, os: OperatingSystem) {
        self.os = os
        self.manifest = manifest
        self.kernel = kernel
        self.gateway = gateway
        self.httpAddress = httpAddress
        self.network = network
        self.clusterAddress = clusterAddress
    }

    /// Reads and parses a manifest file; errors name the file, line and column.
    public static func loadManifest(_ path: String) throws(ManifestErrors) -> Manifest {
        guard let bytes = readFile(path) else {
            throw ManifestErrors(errors: [ManifestError(location: SourceLocation(file: path, line: 0, column: 0),
                                                        message: "cannot read the file (\(String(cString: strerror(errno))))")])
        }
        return try Manifest.parse(bytes, file: path)
    }

    /// Checks what the parser cannot: that every contract has an implementation in this build,
    /// and that durable services have the node's storage.
    public static func check(_ manifest: Manifest, contracts: Contracts) throws(ManifestErrors) {
        var errors: [ManifestError] = []
        for s in manifest.services where contracts.factories[s.contract] == nil {
            errors.append(ManifestError(location: s.location ?? SourceLocation(file: manifest.file, line: 0, column: 0),
                                        message: "no service implements contract \(s.contract); this build knows \(contracts.contracts.joined(separator: ", "))"))
        }
        for s in manifest.services {
            let location = s.location ?? SourceLocation(file: manifest.file, line: 0, column: 0)
            if let name = s.name, SystemServices.all.contains(where: { $0.path == name }) {
                errors.append(ManifestError(location: location, message: "\(name) is a system service's name"))
            }
            if s.durable && contracts.factories[s.contract] != nil && !contracts.durable.contains(s.contract) {
                errors.append(ManifestError(location: location, message: "\(s.contract) cannot keep its state on storage (its service is not a DurableService); remove durable=\"true\""))
            }
            if s.durable && manifest.storage == nil {
                errors.append(ManifestError(location: location, message: "\(s.name ?? s.contract) is durable, but the node has no storage: add <Storage path=\"…\"/> to the manifest, or run with --data DIR"))
            }
        }
        if !errors.isEmpty { throw ManifestErrors(errors: errors) }
    }

    /// Boots a node. Contracts are the standard ones plus `extra` (a service author's own).
    /// `operatorSecret`, when given, is a bearer token allowed everything (docs/security.md).
    public static func boot(_ manifest: Manifest, extra: Contracts = Contracts(), os: OperatingSystem = OperatingSystem(),
                            operatorSecret: String? = nil, logger: Logger = Logger(label: "decos")) async throws -> Node {
        NodeService.version = DecosVersion.string
        let contracts = SystemServices.contracts.merging(os.contracts).merging(extra)
        try check(manifest, contracts: contracts)
        // 1–2. The service loader has read the manifest; load the security manager, URI manager, dispatcher.
        let exposed = manifest.gateway.map { !isLoopback($0.host) } ?? false
        let security = SecurityManager(policy: manifest.security, exposed: exposed, operatorSecret: operatorSecret)
        if exposed && manifest.security == nil {
            logger.warning("the gateway listens on \(manifest.gateway!.host), beyond loopback, with no <Security> rules: anonymous clients may only read")
        }
        let storage = try manifest.storage.map(prepareStorage)
        let kernel = Kernel(node: manifest.node ?? defaultNodeName(), security: security, contracts: contracts, logger: logger,
                            pools: bufferPools(manifest), metrics: NodeMetrics(enabled: manifest.gateway?.metrics ?? true),
                            storage: storage)
        var phases = BootPhases(kernel.metrics)
        collectMetrics(kernel.metrics, node: kernel.node, os: os)
        // The log `/os/log` keeps, and where its lines go besides the console.
        LogBook.shared.keep(manifest.logLines)
        if let syslog = manifest.syslog {
            do {
                LogBook.shared.forward(to: try SyslogForwarder(syslog, hostname: kernel.node))
                logger.info("log lines are forwarded to \(syslog)")
            } catch { logger.error("log lines are not forwarded: \(error)") }
        }
        for (type, path) in SystemServices.all {
            try await kernel.create(ServiceConfig(contract: type.contract, name: path), essential: true)
        }
        phases.end("system_services")
        // 3. Device drivers: in hosted mode the host's interfaces are used as they are.
        // 4. The network binding: the gateway when present, else messages stay local.
        var gateway: Gateway?
        var address: SocketAddress?
        if let binding = manifest.gateway {
            let g = Gateway(kernel: kernel, binding: binding, logger: logger)
            do {
                address = try await g.bind()
            } catch {
                throw BootError(message: "cannot listen on \(binding.host):\(binding.port): \(error)")
            }
            gateway = g
            phases.end("gateway")
        }
        var network: NetworkManager?
        var clusterAddress: SocketAddress?
        if let c = manifest.cluster {
            guard let keyFile = c.keyFile else {
                throw BootError(message: "\(manifest.file): the cluster needs a key: keyFile=\"…\" on <Cluster>, or --cluster-key FILE")
            }
            guard let bytes = readFile(keyFile) else { throw BootError(message: "cannot read the cluster key file \(keyFile)") }
            guard let key = ClusterKey(file: bytes) else { throw BootError(message: "the cluster key in \(keyFile) is shorter than 16 bytes") }
            var config = ClusterConfig(node: kernel.node, host: c.host, port: c.port, seeds: c.seeds, key: key)
            config.advertise = c.advertise
            config.membership.probeInterval = c.probeInterval
            config.membership.probeTimeout = c.probeTimeout
            config.membership.suspicionTimeout = c.suspicionTimeout
            config.membership.suspicionMaxTimeout = c.suspicionMaxTimeout ?? 3 * c.suspicionTimeout
            config.membership.reconnectInterval = c.reconnectInterval
            config.requestTimeout = .seconds(Int64(c.requestTimeout))
            config.dataLinkIdle = .seconds(Int64(c.dataLinkIdle))
            config.encrypt = c.encrypt
            config.dataPlanes = c.dataPlanes.compactMap(PlaneKind.init(name:))
            let n = NetworkManager(kernel: kernel, config: config, logger: logger)
            do {
                clusterAddress = try await n.bind()
            } catch {
                throw BootError(message: "cannot listen for peers on \(c.host):\(c.port): \(error)")
            }
            network = n
            phases.end("cluster")
        }
        if manifest.gateway == nil && manifest.cluster == nil {
            logger.info("no network binding in the manifest: messages stay local")
        }
        // 5. The manifest's services, in order.
        for s in manifest.services {
            do {
                try await kernel.create(s)
            } catch where error.subcode?.local == "StorageRefused" {
                // A file that cannot be used stops its own service, not the node: it is kept for
                // the operator, and the rest of the node serves.
                logger.error("\(s.location.map { "\($0): " } ?? "")\(s.name ?? s.contract) does not start: \(error.reason)")
            } catch {
                throw BootError(message: "\(s.location.map { "\($0): " } ?? "")cannot create \(s.name ?? s.contract): \(error)")
            }
        }
        // Durable services made at run time before this start (by a Create, a loaded manifest).
        for config in kernel.storage?.recreations() ?? [] {
            guard let name = config.name, kernel.uris.lookup(name) == nil else {
                logger.warning("\(config.name ?? "?"): made at run time and stored, but the manifest now has a service of that name, which is started instead (on that file, if it is durable)")
                continue
            }
            do {
                try await kernel.create(config)
            } catch {
                logger.error("\(name) (made at run time, stored) does not start: \(error)")
            }
        }
        phases.end("services")
        // The network manager joins last, so its first table already lists the services.
        network?.start()
        // 6. The manifest's processes, supervised from here on.
        for p in manifest.processes { os.supervisor.start(p) }
        return Node(manifest: manifest, kernel: kernel, gateway: gateway, httpAddress: address,
                    network: network, clusterAddress: clusterAddress, os: os)
    }

    /// What `/metrics` reads of the node and its system when scraped: which node and release,
    /// resident memory, and the restarts of each supervised process.
    static func collectMetrics(_ metrics: NodeMetrics, node: String, os: OperatingSystem) {
        metrics.gauge("decos_node_info", [("node", node), ("version", DecosVersion.string)]).set(1)
        metrics.onScrape { m in
            m.gauge("process_resident_memory_bytes").set(residentBytes())
            for p in os.supervisor.statuses {
                m.mirror("decos_process_restarts_total", [("process", p.name)], total: p.restarts)
                m.gauge("decos_process_running", [("process", p.name)]).set(p.state == .running ? 1 : 0)
            }
        }
    }

    /// One buffer pool per NUMA node, each NIC's buffers landing in its node's pool, pages placed
    /// by libnuma where there is more than one node.
    static func bufferPools(_ manifest: Manifest) -> BufferPools {
        BufferPools(nodes: NUMA.nodes, interfaces: NUMA.interfaces(), limit: manifest.bufferLimit ?? BufferPool.defaultLimit,
                           reserve: manifest.bufferReserve,
                           placement: BufferPool.Placement(prefer: { NUMA.prefer($0, $1, node: $2) }, node: { NUMA.node(of: $0) }))
    }

    /// Serves until the task is cancelled, then leaves the cluster, drops every service in
    /// reverse start order and stops the supervised processes (SIGTERM, then SIGKILL).
    public func run() async throws {
        if let gateway {
            try await gateway.serve()
        } else {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        }
        await network?.stop()
        await kernel.shutdown()
        await os.supervisor.stopAll()
    }
}

/// How long each phase of booting took, as `decos_boot_phase_seconds{phase}`: each phase ends
/// where the next begins. The appliance adds the phases before the node (drivers, network).
public struct BootPhases {
    let metrics: NodeMetrics
    var mark = ContinuousClock.now

    public init(_ metrics: NodeMetrics) { self.metrics = metrics }

    public mutating func end(_ phase: String) {
        let now = ContinuousClock.now
        BootPhases.record(phase, took: now - mark, in: metrics)
        mark = now
    }

    public static func record(_ phase: String, took: Duration, in metrics: NodeMetrics) {
        metrics.gauge("decos_boot_phase_seconds", [("phase", phase)]).set(took.inSeconds)
    }
}

/// The storage directory and its `services/`, made if missing: durable services' files go there.
func prepareStorage(_ directory: String) throws -> ServiceFiles {
    var made = ""
    for part in (directory + "/services").split(separator: "/") {
        made += "/" + part
        if mkdir(made, 0o700) != 0 && errno != EEXIST {
            throw BootError(message: "cannot make the storage directory \(made): \(String(cString: strerror(errno)))")
        }
    }
    guard access(made, W_OK) == 0 else {
        throw BootError(message: "cannot write in the storage directory \(made): \(String(cString: strerror(errno)))")
    }
    try StorageLock.take(directory)
    // Copies a backup or a restore was making when the node stopped.
    if let dir = opendir(made) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix(".backup-") || name.hasPrefix(".restore-") { unlink(made + "/" + name) }
        }
        closedir(dir)
    }
    return ServiceFiles(directory: directory)
}

/// One node a storage directory: a second on the same files would write them from another
/// state. Held from boot until the process ends, or until `release` (the appliance, before it
/// unmounts its data disk).
public enum StorageLock {
    private static let held = Mutex<Int32?>(nil)

    static func take(_ directory: String) throws {
        let lock = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw BootError(message: "cannot open \(directory)/lock: \(String(cString: strerror(errno)))") }
        guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            close(lock)
            throw BootError(message: "the storage directory \(directory) is in use by another node (its lock file \(directory)/lock is held)")
        }
        held.withLock { old in
            if let old { close(old) }
            old = lock
        }
    }

    /// Lets the lock go (the node has stopped, its services' files are closed).
    public static func release() {
        held.withLock { fd in
            if let f = fd { close(f) }
            fd = nil
        }
    }
}

public struct BootError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

func isLoopback(_ host: String) -> Bool {
    host == "localhost" || host.hasPrefix("127.") || host == "::1"
}

func defaultNodeName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, buf.count) == 0 else { return "local" }
    let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let clean = String(name.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == ".") })
    return clean.isEmpty ? "local" : clean
}
