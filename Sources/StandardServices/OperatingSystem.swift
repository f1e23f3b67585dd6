import DeviceDrivers
import Infoset
import ProcessKernel
import ServiceKernel
import Synchronization

/// The operating system under a node, as its `/os/*` services see it: the supervised processes,
/// the devices, modules and links the device-driver kernel found and set up, and the power switch.
/// In hosted mode the same services show the host's devices and links, and power ends the process.
public final class OperatingSystem: Sendable {
    public let supervisor: Supervisor
    /// The module loader of a PID 1 node; nil in hosted mode, where the host's kernel has its own.
    public let modules: ModuleLoader?
    public let isAppliance: Bool
    private let power = Mutex<(@Sendable (PowerAction) -> Void)?>(nil)
    private let notes = Mutex<[String: [String]]>([:])

    public init(supervisor: Supervisor = Supervisor(), modules: ModuleLoader? = nil, isAppliance: Bool = InitProcess.isAppliance) {
        self.supervisor = supervisor
        self.modules = modules
        self.isAppliance = isAppliance
    }

    /// Who ends the node when `/os/node` is asked to power off or reboot.
    public func onPower(_ handler: @escaping @Sendable (PowerAction) -> Void) { power.withLock { $0 = handler } }

    func requestPower(_ action: PowerAction) -> Bool {
        guard let handler = power.withLock({ $0 }) else { return false }
        handler(action)
        return true
    }

    /// What the network setup did or failed at, per link name, for `/os/links`.
    public func note(link: String, _ text: String) { notes.withLock { $0[link, default: []].append(text) } }
    func notes(for link: String) -> [String] { notes.withLock { $0[link] ?? [] } }

    /// The `/os/*` services that need this system (`/os/devices` and `/os/rdma` read the kernel's own state).
    public var contracts: Contracts {
        var c = Contracts()
        c.register(contract: NodeService.contract) { _ in NodeService(os: self) }
        c.register(contract: ProcessesService.contract) { _ in ProcessesService(os: self) }
        c.register(contract: LinksService.contract) { _ in LinksService(os: self) }
        c.register(contract: ModulesService.contract) { _ in ModulesService(os: self) }
        return c
    }
}

/// `/os/processes`: the manifest's processes, their state, pid, restarts, last exit and last line
/// of output. Submit `<Restart><Name>p</Name></Restart>` or `<Stop><Name>p</Name></Stop>` for an
/// operator's restart or stop. Subscribers are told of changes as an Update with the whole list,
/// at most ten times a second however chatty the processes are.
public actor ProcessesService: Service {
    public static let contract = "urn:decos:os:processes"
    public static let operations = [
        ServiceOperation(.get, returns: ProcessList.self),
        ServiceOperation(.submit, takes: .any, returns: .of(ProcessList.self)),
    ]

    public struct ProcessList: Codable, Sendable { public var process: [ProcessStatus] }

    let os: OperatingSystem
    private var context: ServiceContext?
    private var flushScheduled = false

    init(os: OperatingSystem) { self.os = os }
    public init(config: ServiceConfig) { os = OperatingSystem() }

    public func start(_ context: ServiceContext) async throws {
        self.context = context
        os.supervisor.observe { [weak self] _ in
            guard let self else { return }
            Task { await self.changed() }
        }
    }

    /// Coalesces changes: the first schedules one notification 100 ms on, carrying the list as it
    /// is then; changes until it goes ride along.
    private func changed() {
        guard !flushScheduled, context?.hasSubscribers == true else { return }
        flushScheduled = true
        Task {
            try? await Task.sleep(for: .milliseconds(100))
            await self.flush()
        }
    }

    private func flush() {
        flushScheduled = false
        context?.publish(.update, body: try? infoset(ProcessList(process: os.supervisor.statuses)))
    }

    public func handle(_ request: Request) async throws -> Element? {
        switch request.verb {
        case .get:
            return try infoset(ProcessList(process: os.supervisor.statuses))
        case .submit:
            guard let body = request.body, ["Restart", "Stop"].contains(body.name.local),
                  let name = body.child("Name")?.text.trimmingXMLSpace(), !name.isEmpty else {
                throw Fault.invalidBody("Submit to /os/processes takes <Restart><Name>p</Name></Restart> or <Stop><Name>p</Name></Stop>")
            }
            let known = body.name.local == "Restart" ? os.supervisor.restart(name) : await os.supervisor.stop(name)
            guard known else { throw Fault(.sender, "NotFound", "no process named \"\(name)\"") }
            return try infoset(ProcessList(process: os.supervisor.statuses))
        default:
            throw Fault.actionNotSupported(request.verb, "/os/processes")
        }
    }
}

/// `/os/devices`: the PCI and virtio devices sysfs shows, with their drivers.
public actor DevicesService: Service {
    public static let contract = "urn:decos:os:devices"
    public static let operations = [ServiceOperation(.get, returns: DeviceList.self)]

    public struct DeviceList: Codable, Sendable { public var device: [DeviceEntry] }
    public struct DeviceEntry: Codable, Sendable {
        public var bus: String
        public var address: String
        public var vendor: String?
        public var device: String?
        /// Names from libpci's ID database (hosted build; the appliance shows the IDs alone).
        public var vendorName: String?
        public var deviceName: String?
        public var `class`: String?
        public var modalias: String?
        public var driver: String?
        public var interface: [String]
    }

    public init(config: ServiceConfig) {}

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/devices") }
        return try infoset(DeviceList(device: Device.scan().map {
            DeviceEntry(bus: $0.bus, address: $0.address, vendor: $0.vendor, device: $0.device,
                        vendorName: $0.vendorName, deviceName: $0.deviceName, class: $0.deviceClass,
                        modalias: $0.modalias, driver: $0.driver, interface: $0.interfaces)
        }))
    }
}

/// `/os/links`: network interfaces with their state and addresses, and what setting them up did.
public actor LinksService: Service {
    public static let contract = "urn:decos:os:links"
    public static let operations = [ServiceOperation(.get, returns: LinkList.self)]

    public struct LinkList: Codable, Sendable { public var link: [LinkEntry] }
    public struct LinkEntry: Codable, Sendable {
        public var name: String
        public var index: Int32
        public var mac: String
        public var mtu: Int
        public var up: Bool
        public var carrier: Bool
        public var address: [String]
        public var note: [String]
    }

    let os: OperatingSystem
    init(os: OperatingSystem) { self.os = os }
    public init(config: ServiceConfig) { os = OperatingSystem() }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/links") }
        let links: [Link]
        do { links = try RouteNetlink().links() } catch { throw Fault(.receiver, "Netlink", "cannot list links: \(error)") }
        return try infoset(LinkList(link: links.map {
            LinkEntry(name: $0.name, index: $0.index, mac: $0.mac, mtu: $0.mtu, up: $0.up, carrier: $0.carrier,
                      address: $0.addresses.map(\.description), note: os.notes(for: $0.name))
        }))
    }
}

/// `/os/modules`: the kernel modules the node loaded, why, and what failed.
public actor ModulesService: Service {
    public static let contract = "urn:decos:os:modules"
    public static let operations = [ServiceOperation(.get, returns: ModuleList.self)]

    public struct ModuleList: Codable, Sendable {
        /// Where modules come from: the image's module tree, or "host" in hosted mode.
        public var source: String
        public var module: [ModuleRecord]
    }

    let os: OperatingSystem
    init(os: OperatingSystem) { self.os = os }
    public init(config: ServiceConfig) { os = OperatingSystem() }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/modules") }
        return try infoset(ModuleList(source: os.modules?.root ?? "host (hosted mode: the host's kernel loads its own modules)",
                                      module: os.modules?.loaded ?? []))
    }
}

/// `/os/rdma`: the RDMA devices libibverbs sees, and a self-test: Submit
/// `<ReadTest><Device>rxe0</Device><Bytes>4194304</Bytes></ReadTest>` READs that many bytes between
/// two queue pairs of the device through a memory window, checks them, invalidates the window and
/// says what a READ after that met (`AfterLease`: it must be refused).
public actor RDMAService: Service {
    public static let contract = "urn:decos:os:rdma"
    public static let operations = [ServiceOperation(.get, returns: RDMADevices.self), ServiceOperation(.submit, takes: ReadTest.self, returns: ReadTestResult.self)]

    public struct RDMADevices: Codable, Sendable { public var device: [RDMADeviceEntry] }
    public struct RDMADeviceEntry: Codable, Sendable {
        public var name: String
        /// Port 1's state (ACTIVE once its netdev is up with an address), or why it could not be opened.
        public var state: String
        public var mtu: Int?
    }
    public struct ReadTest: Codable, Sendable {
        public var device: String
        public var bytes: Int?
    }
    public struct ReadTestResult: Codable, Sendable {
        public var device: String
        public var bytes: Int
        public var intact: Bool
        public var microseconds: Int
        public var megabytesPerSecond: Double
        public var afterLease: String
    }

    public init(config: ServiceConfig) {}

    public func handle(_ request: Request) async throws -> Element? {
        switch request.verb {
        case .get:
            do {
                return try infoset(RDMADevices(device: try RDMADevice.names().map { name in
                    do {
                        let port = try RDMADevice(name, waitMilliseconds: 0).port
                        return RDMADeviceEntry(name: name, state: port.state, mtu: port.mtu)
                    } catch {
                        return RDMADeviceEntry(name: name, state: "\(error)", mtu: nil)
                    }
                }))
            } catch let e as VerbsError {
                throw Fault(.receiver, "Verbs", e.description)
            }
        case .submit:
            let t = try request.decode(ReadTest.self)
            let bytes = t.bytes ?? 4 << 20
            guard (1...(1 << 30)).contains(bytes) else { throw Fault.invalidBody("Bytes must be 1 to 1073741824") }
            do {
                let r = try await RDMASelfTest.loopbackRead(device: t.device, bytes: bytes)
                return try infoset(ReadTestResult(device: r.device, bytes: r.bytes, intact: r.intact, microseconds: Int(r.seconds * 1e6),
                                                  megabytesPerSecond: (Double(r.bytes) / r.seconds / 1e6 * 10).rounded() / 10,
                                                  afterLease: r.afterLease))
            } catch let e as VerbsError {
                throw Fault(.receiver, "Verbs", e.description)
            }
        default:
            throw Fault.actionNotSupported(request.verb, "/os/rdma")
        }
    }
}
