import ProcessKernel
import Infoset

/// Where something came from in a manifest, for messages a user can act on.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

public struct ManifestError: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(location: SourceLocation, message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): error: \(message)" }
}

/// Every error found in one manifest, reported together.
public struct ManifestErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ManifestError]

    public init(errors: [ManifestError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// One service the manifest asks for.
public struct ServiceConfig: Sendable {
    public var contract: String
    /// Preferred path (`/counter`); the URI manager generates one when absent or taken.
    public var name: String?
    /// Partner name → URI (a path or `decos://node/path`).
    public var partners: [String: String]
    /// Initial state, as the service's state element.
    public var state: Element?
    /// Service-specific settings, as written in the manifest's `<Config>`.
    public var settings: Element?
    /// Whether every change a verb makes is stored before its reply (`durable="true"`): the
    /// service keeps its state across restarts, on the node's storage.
    public var durable = false
    public var location: SourceLocation?

    public init(contract: String, name: String? = nil, partners: [String: String] = [:], state: Element? = nil,
                settings: Element? = nil, location: SourceLocation? = nil) {
        self.contract = contract
        self.name = name
        self.partners = partners
        self.state = state
        self.settings = settings
        self.location = location
    }

    /// The initial state as a typed value, or nil if the manifest gives none.
    public func initialState<T: Decodable>(_ type: T.Type) throws -> T? {
        guard let state else { return nil }
        return try InfosetDecoder().decode(type, from: state)
    }
}

/// The gateway binding: present means this node speaks HTTP to the outside.
public struct GatewayBinding: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var maxRequestBytes: Int
    /// The most bytes of buffers one request may carry as MTOM parts (each part, and all together);
    /// the envelope itself stays within `maxRequestBytes`.
    public var maxBufferBytes = 64 << 20
    /// Seconds a request may wait for its service before it ends in a timeout fault.
    public var requestTimeout: Int
    /// Seconds a connection may stay silent (between requests, or mid-request) before it is closed.
    public var idleTimeout: Int
    /// Whether the node counts requests, calls and the rest for `GET /metrics` (`metrics="off"`:
    /// nothing counted, and /metrics is not served).
    public var metrics = true
    /// PEM files of the certificate (chain) and its private key: when named, the gateway serves
    /// HTTPS only.
    public var certificate: String?
    public var key: String?
    public var tls: Bool { certificate != nil }
    /// DNS names clients may reach the gateway by, besides IP addresses and `localhost`
    /// (`hosts="node-a.lan decos.example.com"`): a request whose `Host` is another name is refused,
    /// which is what stops a DNS-rebinding page from acting on the node.
    public var hosts: [String] = []
    /// Connections open at once (503 past it), and those from one client address.
    public var maxConnections = 1024
    public var maxConnectionsPerClient = 512
    /// Requests being answered at once, node-wide, and event streams or SOAP subscriptions open at once.
    public var maxRequestsInFlight = 1024
    public var maxStreams = 256

    public init(host: String = "127.0.0.1", port: Int = 7480, maxRequestBytes: Int = 1 << 20, requestTimeout: Int = 30,
                idleTimeout: Int = 30) {
        self.host = host
        self.port = port
        self.maxRequestBytes = maxRequestBytes
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
    }
}

/// The cluster binding: present means this node joins other nodes in one URI namespace.
public struct ClusterBinding: Sendable, Hashable {
    /// The data planes there are.
    public static let planeNames = ["rdma", "xdp", "tcp"]

    /// What `planes` takes, for the error that says so.
    public static let planesRule = "data planes, each once, from \(planeNames.joined(separator: " "))"

    /// "rdma xdp tcp" or "rdma,tcp": known plane names, each once, at least one; nil otherwise.
    public static func planes(_ text: String) -> [String]? {
        let names = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        guard !names.isEmpty, names.allSatisfy(planeNames.contains), Set(names).count == names.count else { return nil }
        return names
    }

    public var host = "127.0.0.1"
    public var port = 7946
    /// The address peers should use for this node, when it differs from the listen address.
    public var advertise: String?
    public var seeds: [String] = []
    /// A file holding the cluster key (at least 16 bytes); every node of a cluster has the same.
    public var keyFile: String?
    /// Membership timings in milliseconds (docs/manifest.md gives their meaning and defaults).
    public var probeInterval: UInt64 = 1000
    public var probeTimeout: UInt64 = 400
    public var suspicionTimeout: UInt64 = 4000
    /// Unless given, three times `suspicionTimeout`.
    public var suspicionMaxTimeout: UInt64?
    public var reconnectInterval: UInt64 = 3000
    /// Seconds a call to another node may take before it ends in a timeout fault.
    public var requestTimeout = 10
    /// Seconds a data connection no buffer moves on stays open (each holds a socket and a thread).
    public var dataLinkIdle = 30
    /// Whether frames between nodes are encrypted; every node of a cluster must agree.
    public var encrypt = true
    /// The data planes offered for buffers, in order of preference (`<DataPlane prefer="…"/>`).
    public var dataPlanes = ClusterBinding.planeNames

    public init() {}
}

/// A node's manifest: its name, its network binding, its security rules and its services.
public struct Manifest: Sendable {
    public static let namespace = "urn:decos:manifest"

    public var node: String?
    public var gateway: GatewayBinding?
    public var cluster: ClusterBinding?
    public var security: SecurityPolicy?
    public var services: [ServiceConfig]
    /// Programs the node starts and keeps running (restart policy per process).
    public var processes: [ProcessSpec] = []
    /// The most bytes each of the node's buffer pools maps (`<Memory buffers="…"/>`); nil for the default.
    public var bufferLimit: Int?
    /// Bytes each pool that serves a NIC maps at boot (`<Memory reserve="…"/>`), so the first
    /// buffers pay no page faults.
    public var bufferReserve = 0
    /// Where log lines are forwarded (`<Logging syslog="udp://HOST:PORT"/>`), if anywhere.
    public var syslog: String?
    /// How many log lines `/os/log` keeps (`<Logging lines="…"/>`).
    public var logLines = LogBook.defaultLines
    /// The directory durable services keep their state in (`<Storage path="…"/>`, or `decos run
    /// --data DIR`; the appliance's data disk); nil: the node keeps nothing across restarts.
    public var storage: String?
    public var file: String

    public init(node: String? = nil, gateway: GatewayBinding? = nil, security: SecurityPolicy? = nil,
                services: [ServiceConfig] = [], file: String = "<manifest>") {
        self.node = node
        self.gateway = gateway
        self.security = security
        self.services = services
        self.file = file
    }

    /// Parses a manifest, collecting every error with its file, line and column.
    public static func parse(_ bytes: [UInt8], file: String) throws(ManifestErrors) -> Manifest {
        let root: Element
        do {
            root = try XMLReader.parse(bytes)
        } catch {
            throw ManifestErrors(errors: [ManifestError(location: SourceLocation(file: file, line: error.line, column: error.column),
                                                        message: error.message)])
        }
        var reader = ManifestReader(file: file, bytes: bytes)
        let manifest = reader.manifest(root)
        if !reader.errors.isEmpty { throw ManifestErrors(errors: reader.errors) }
        return manifest
    }

    public static func parse(_ text: String, file: String = "<manifest>") throws(ManifestErrors) -> Manifest {
        try parse(Array(text.utf8), file: file)
    }
}
