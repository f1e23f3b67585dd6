import Addresses

/// The kernel command line (`/proc/cmdline`) and the `decos.*` parameters on it.
///
/// Words are separated by spaces; a value may be double-quoted to hold spaces
/// (`decos.node="a b"`). Only `decos.`-prefixed words are ours; the rest belong to the kernel.
public struct KernelCommandLine: Sendable, Equatable {
    /// `decos.KEY=VALUE` words, KEY without the prefix, in order (a repeated key keeps every value).
    public var parameters: [(key: String, value: String)]

    public static func == (a: Self, b: Self) -> Bool {
        a.parameters.elementsEqual(b.parameters) { $0.key == $1.key && $0.value == $1.value }
    }

    public init(_ text: String) {
        parameters = []
        for word in Self.words(text) where word.hasPrefix("decos.") {
            let body = word.dropFirst(6)
            if let eq = body.firstIndex(of: "=") {
                parameters.append((String(body[..<eq]), String(body[body.index(after: eq)...])))
            } else {
                parameters.append((String(body), ""))
            }
        }
    }

    /// The last value given for `key`.
    public subscript(key: String) -> String? { parameters.last { $0.key == key }?.value }

    static func words(_ text: String) -> [String] {
        var words: [String] = [], current = "", quoted = false, any = false
        for c in text {
            if c == "\"" { quoted.toggle(); any = true; continue }
            if !quoted && (c == " " || c == "\n" || c == "\t") {
                if any { words.append(current) }
                current = ""; any = false
                continue
            }
            current.append(c); any = true
        }
        if any { words.append(current) }
        return words
    }
}

/// What the `decos.*` parameters ask of the node, validated. A bad value is reported in `errors`
/// and left out; everything valid is still used (docs/boot.md lists the parameters).
public struct BootParameters: Sendable {
    public var node: String?
    public var manifest = "/etc/decos/node.xml"
    public var http: String?
    public var listen: String?
    public var seeds: [String] = []
    public var clusterKey: String?
    public var operatorToken = "/etc/decos/operator.token"
    /// The interface to configure; nil means the first Ethernet link found.
    public var interface: String?
    /// `nil`: DHCP; else a static IPv4 address with its prefix length.
    public var address: IPv4CIDR?
    /// Static addresses on further links (`decos.ip=eth1:10.77.1.2/24`), e.g. a cluster's LAN.
    public var linkAddresses: [(link: String, address: IPv4CIDR)] = []
    public var gateway: IPv4Address?
    public var mtu: Int?
    public var modules: [String] = []
    /// Netdevs to put a Soft-RoCE (rxe) device on.
    public var rxe: [String] = []
    /// `decos.dataplane=rdma,tcp`: the data planes offered, in order (checked by the manifest's rules).
    public var dataPlanes: String?
    /// `decos.syslog=udp://10.0.0.1:514`: where log lines are forwarded (checked by the manifest's rules).
    public var syslog: String?
    /// `decos.data=/dev/vdb`: the data disk (durable services' storage, mounted at /data); nil: the
    /// first virtio disk; `decos.data=none`: no data disk, the node keeps nothing.
    public var data: String?
    public var panicDelay = 10
    public var logLevel = "info"
    public var errors: [String] = []

    public static let known = ["node", "manifest", "http", "listen", "seed", "cluster_key", "operator_token", "iface", "ip",
                               "gw", "mtu", "modules", "rxe", "dataplane", "data", "panic_delay", "log"]

    public init() {}

    public init(_ line: KernelCommandLine) {
        for (key, value) in line.parameters {
            func bad(_ why: String) { errors.append("decos.\(key)=\(value): \(why); ignored") }
            switch key {
            case "node":
                if value.isEmpty || value.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) {
                    bad("a node name is letters, digits, '-' and '.'")
                } else { node = value }
            case "manifest": if value.hasPrefix("/") { manifest = value } else { bad("the manifest is an absolute path in the image") }
            case "http": if parseHostPort(value) != nil { http = value } else { bad("expected HOST:PORT") }
            case "listen": if parseHostPort(value) != nil { listen = value } else { bad("expected HOST:PORT") }
            case "seed":
                for s in value.split(separator: ",").map(String.init) {
                    if parseHostPort(s) != nil { seeds.append(s) } else { errors.append("decos.seed: \(s) is not HOST:PORT; ignored") }
                }
            case "cluster_key": if value.hasPrefix("/") { clusterKey = value } else { bad("the key file is an absolute path in the image") }
            case "operator_token": if value.hasPrefix("/") { operatorToken = value } else { bad("the token file is an absolute path in the image") }
            case "iface": if !value.isEmpty && value.count < 16 { interface = value } else { bad("not an interface name") }
            case "ip":
                if value == "dhcp" { address = nil }
                else if let a = IPv4CIDR(value) { address = a }
                else if let colon = value.firstIndex(of: ":"), colon > value.startIndex,
                        let a = IPv4CIDR(String(value[value.index(after: colon)...])) { linkAddresses.append((String(value[..<colon]), a)) }
                else { bad("expected dhcp, ADDRESS/PREFIX (10.0.2.15/24) or LINK:ADDRESS/PREFIX (eth1:10.77.1.2/24)") }
            case "gw": if let a = IPv4Address(value) { gateway = a } else { bad("expected an IPv4 address") }
            case "mtu": if let m = Int(value), (68...65535).contains(m) { mtu = m } else { bad("expected 68–65535") }
            case "modules": modules += value.split(separator: ",").map(String.init)
            case "rxe": rxe += value.split(separator: ",").map(String.init)
            case "dataplane": dataPlanes = value
            case "syslog": syslog = value
            case "data":
                if value == "none" || (value.hasPrefix("/dev/") && value.count > 5 && !value.contains("..")) { data = value }
                else { bad("expected a block device (/dev/vdb) or none") }
            case "panic_delay": if let d = Int(value), (0...3600).contains(d) { panicDelay = d } else { bad("expected seconds, 0–3600") }
            case "log":
                if ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) { logLevel = value }
                else { bad("expected trace, debug, info, notice, warning, error or critical") }
            default:
                errors.append("decos.\(key): unknown parameter; known are \(Self.known.map { "decos.\($0)" }.joined(separator: ", "))")
            }
        }
    }
}
