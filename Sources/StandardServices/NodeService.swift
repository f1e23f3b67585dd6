import Infoset
import ProcessKernel
import ServiceKernel
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `/os/node`: the node itself, seen as a service. Get reads its state; Submit `<Poweroff/>` or
/// `<Reboot/>` ends it in order (as PID 1 the machine powers off or reboots; hosted, the process exits).
/// Submit `<Crash/>` traps the node process on purpose, as a service's bug would, to exercise the
/// recovery path (under PID 1 the node is started again; hosted, the process dies).
public actor NodeService: Service {
    public static let contract = "urn:decos:os:node"
    public static let operations = [ServiceOperation(.get, returns: NodeState.self), ServiceOperation(.submit, takes: .any, returns: .any)]

    public struct NodeState: Codable, Sendable {
        public var name: String
        public var authority: String
        public var pid: Int32
        public var uptimeSeconds: Double
        public var residentBytes: Int
        public var services: Int
        public var version: String
        /// `appliance` when the node is a machine's whole user space (under PID 1's loop), `hosted` when it runs as a process.
        public var mode: String
        /// Seconds since the kernel started (CLOCK_BOOTTIME).
        public var bootSeconds: Double
    }

    public struct PowerResponse: Codable, Sendable {
        public var action: String
    }

    /// The running build's version; `Decos` sets it before booting.
    nonisolated(unsafe) public static var version = "dev"

    private var kernel: Kernel?
    private let os: OperatingSystem

    init(os: OperatingSystem) { self.os = os }
    public init(config: ServiceConfig) { os = OperatingSystem() }

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "node service not started") }
        if request.verb == .submit { return try power(request) }
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/node") }
        return try infoset(NodeState(
            name: kernel.node, authority: kernel.uris.authority, pid: getpid(),
            uptimeSeconds: kernel.uptime.inSeconds,
            residentBytes: residentBytes(), services: kernel.uris.entries.count, version: NodeService.version,
            mode: os.isAppliance ? "appliance" : "hosted", bootSeconds: InitProcess.bootTime.inSeconds))
    }

    private func power(_ request: Request) throws -> Element? {
        if request.body?.name.local == "Crash", request.body?.elements.isEmpty == true {
            Task.detached {
                try? await Task.sleep(for: .milliseconds(100))  // the reply goes out first
                fatalError("crash requested through /os/node")
            }
            return Element("CrashResponse")
        }
        guard let body = request.body, body.elements.isEmpty,
              let action = [("Poweroff", PowerAction.poweroff), ("Reboot", .reboot)].first(where: { $0.0 == body.name.local })?.1 else {
            throw Fault.invalidBody("Submit to /os/node takes <Poweroff/>, <Reboot/> or <Crash/>")
        }
        guard os.requestPower(action) else { throw Fault(.receiver, "NotSupported", "this node has no power control") }
        return try infoset(PowerResponse(action: action.rawValue))
    }
}

/// Resident set size of this process, from /proc/self/statm.
public func residentBytes() -> Int {
    guard let bytes = readFile("/proc/self/statm") else { return 0 }
    let fields = String(decoding: bytes, as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
