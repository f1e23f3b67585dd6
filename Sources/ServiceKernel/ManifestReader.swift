import Addresses
import ProcessKernel
import Infoset

/// Walks a manifest's infoset, checking names and values as it goes.
struct ManifestReader {
    let file: String
    let bytes: [UInt8]
    var errors: [ManifestError] = []

    func location(_ e: Element) -> SourceLocation {
        let (line, column) = XMLReader.lineColumn(of: e.sourceOffset, in: bytes)
        return SourceLocation(file: file, line: line, column: column)
    }

    mutating func fail(_ e: Element, _ message: String) {
        errors.append(ManifestError(location: location(e), message: message))
    }

    /// Reports attributes the element does not allow, and returns the required ones that are missing as nil.
    mutating func attributes(_ e: Element, allowed: Set<String>, required: Set<String> = []) {
        for a in e.attributes where !allowed.contains(a.name.local) || !a.name.namespace.isEmpty {
            fail(e, "<\(e.name.local)> has no attribute \"\(a.name.local)\"; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
        for r in required.sorted() where e.attribute(r) == nil {
            fail(e, "<\(e.name.local)> needs the attribute \"\(r)\"")
        }
    }

    func inManifestNamespace(_ e: Element) -> Bool { e.name.namespace == Manifest.namespace }

    mutating func manifest(_ root: Element) -> Manifest {
        var m = Manifest(file: file)
        guard root.name == QName(Manifest.namespace, "Manifest") else {
            fail(root, "the root element must be <Manifest xmlns=\"\(Manifest.namespace)\">, found \(root.name)")
            return m
        }
        attributes(root, allowed: ["node"])
        if let node = root.attribute("node") {
            if isValidNodeName(node) { m.node = node } else {
                fail(root, "node name \"\(node)\" must be letters, digits, '-' or '.'")
            }
        }
        var names: [String: Element] = [:]
        var sawMemory = false, sawLogging = false, sawStorage = false
        for e in root.elements {
            guard inManifestNamespace(e) else { fail(e, "\(e.name) is not a manifest element"); continue }
            switch e.name.local {
            case "Network":
                if m.gateway != nil || m.cluster != nil { fail(e, "only one <Network> is allowed") }
                (m.gateway, m.cluster) = network(e)
            case "Security":
                if m.security != nil { fail(e, "only one <Security> is allowed") }
                m.security = security(e)
            case "Service":
                guard let s = service(e) else { continue }
                if let name = s.name {
                    if let previous = names[name] {
                        fail(e, "the name \(name) is already used by the service at line \(location(previous).line)")
                    }
                    names[name] = e
                }
                m.services.append(s)
            case "Memory":
                if sawMemory { fail(e, "only one <Memory> is allowed") }
                sawMemory = true
                attributes(e, allowed: ["buffers", "reserve"])
                if let v = e.attribute("buffers") {
                    if let n = byteCount(v), n >= 1 << 20 { m.bufferLimit = n }
                    else { fail(e, "buffers=\"\(v)\" must be a size of at least 1 MiB: bytes, or a number with KiB, MiB or GiB") }
                }
                if let v = e.attribute("reserve") {
                    if let n = byteCount(v), n <= (m.bufferLimit ?? BufferPool.defaultLimit) { m.bufferReserve = n }
                    else { fail(e, "reserve=\"\(v)\" must be a size no larger than the pool (buffers=)") }
                }
            case "Logging":
                if sawLogging { fail(e, "only one <Logging> is allowed") }
                sawLogging = true
                attributes(e, allowed: ["syslog", "lines"])
                if let v = e.attribute("syslog") {
                    if SyslogForwarder.parse(v) != nil { m.syslog = v } else { fail(e, "syslog=\"\(v)\" must be udp://HOST:PORT") }
                }
                if let v = e.attribute("lines") {
                    if let n = Int(v), (100...100_000).contains(n) { m.logLines = n } else { fail(e, "lines=\"\(v)\" must be 100 to 100000") }
                }
            case "Storage":
                if sawStorage { fail(e, "only one <Storage> is allowed") }
                sawStorage = true
                attributes(e, allowed: ["path"], required: ["path"])
                if let path = e.attribute("path") {
                    if path.hasPrefix("/") { m.storage = path } else { fail(e, "path=\"\(path)\" must be absolute") }
                }
            case "Process":
                guard let p = process(e) else { continue }
                if m.processes.contains(where: { $0.name == p.name }) { fail(e, "the process name \(p.name) is already used") }
                m.processes.append(p)
            default:
                fail(e, "unknown element <\(e.name.local)>; expected <Network>, <Memory>, <Logging>, <Storage>, <Security>, <Service> or <Process>")
            }
        }
        return m
    }

    mutating func network(_ e: Element) -> (GatewayBinding?, ClusterBinding?) {
        attributes(e, allowed: [])
        var binding: GatewayBinding?
        var cluster: ClusterBinding?
        var dataPlanePreference: [String]?
        for g in e.elements {
            guard inManifestNamespace(g) else { fail(g, "\(g.name) is not a manifest element"); continue }
            switch g.name.local {
            case "Gateway": binding = gateway(g)
            case "Cluster": cluster = self.cluster(g)
            case "DataPlane":
                attributes(g, allowed: ["prefer"], required: ["prefer"])
                if let planes = dataPlanes(g) { dataPlanePreference = planes }
            default: fail(g, "unknown element <\(g.name.local)> in <Network>; expected <Gateway>, <Cluster> or <DataPlane>")
            }
        }
        if let p = dataPlanePreference {
            if cluster == nil { fail(e, "<DataPlane> needs a <Cluster>: data planes move buffers between nodes") } else { cluster!.dataPlanes = p }
        }
        return (binding, cluster)
    }

    mutating func gateway(_ g: Element) -> GatewayBinding {
        attributes(g, allowed: ["listen", "maxRequestBytes", "maxBufferBytes", "requestTimeout", "idleTimeout", "metrics", "certificate", "key", "hosts",
                                "maxConnections", "maxConnectionsPerClient", "maxRequestsInFlight", "maxStreams"])
        var b = GatewayBinding()
        if let listen = g.attribute("listen") {
            if let (host, port) = parseHostPort(listen) { b.host = host; b.port = port }
            else { fail(g, "listen=\"\(listen)\" is not HOST:PORT") }
        }
        if let v = g.attribute("maxRequestBytes") {
            if let n = Int(v), n >= 1024 { b.maxRequestBytes = n } else { fail(g, "maxRequestBytes=\"\(v)\" must be a number of bytes ≥ 1024") }
        }
        if let v = g.attribute("maxBufferBytes") {
            if let n = Int(v), n >= 0 { b.maxBufferBytes = n } else { fail(g, "maxBufferBytes=\"\(v)\" must be a number of bytes (0: no buffers)") }
        }
        // A day at most: seconds become NIO time amounts in nanoseconds, which overflow past ~292 years.
        b.requestTimeout = positive(g, "requestTimeout", atMost: 86400) ?? b.requestTimeout
        b.idleTimeout = positive(g, "idleTimeout", atMost: 86400) ?? b.idleTimeout
        b.maxConnections = positive(g, "maxConnections") ?? b.maxConnections
        b.maxConnectionsPerClient = positive(g, "maxConnectionsPerClient") ?? b.maxConnectionsPerClient
        b.maxRequestsInFlight = positive(g, "maxRequestsInFlight") ?? b.maxRequestsInFlight
        b.maxStreams = positive(g, "maxStreams") ?? b.maxStreams
        if let v = g.attribute("hosts") {
            b.hosts = v.split(whereSeparator: { $0 == " " || $0 == "," }).map { $0.lowercased() }
            for h in b.hosts where h.isEmpty || !h.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) {
                fail(g, "hosts=\"\(v)\": \(h) is not a DNS name (letters, digits, - and .)")
            }
        }
        b.metrics = onOff(g, "metrics") ?? b.metrics
        b.certificate = g.attribute("certificate")
        b.key = g.attribute("key")
        if (b.certificate == nil) != (b.key == nil) { fail(g, "certificate= and key= go together: HTTPS needs both PEM files") }
        return b
    }

    /// An attribute that is `on` or `off`; nil when absent (or wrong, which fails).
    mutating func onOff(_ e: Element, _ name: String) -> Bool? {
        switch e.attribute(name) {
        case nil: return nil
        case "on": return true
        case "off": return false
        case let v?:
            fail(e, "\(name)=\"\(v)\" must be on or off")
            return nil
        }
    }

    mutating func cluster(_ c: Element) -> ClusterBinding {
        attributes(c, allowed: ["listen", "advertise", "keyFile", "probeInterval", "probeTimeout", "suspicionTimeout", "suspicionMaxTimeout",
                                "reconnectInterval", "requestTimeout", "dataLinkIdle", "encryption"])
        var b = ClusterBinding()
        if let listen = c.attribute("listen") {
            if let (host, port) = parseHostPort(listen) { b.host = host; b.port = port }
            else { fail(c, "listen=\"\(listen)\" is not HOST:PORT") }
        }
        if let a = c.attribute("advertise") {
            if parseHostPort(a) != nil { b.advertise = a } else { fail(c, "advertise=\"\(a)\" is not HOST:PORT") }
        }
        b.keyFile = c.attribute("keyFile")
        b.probeInterval = positive(c, "probeInterval", atMost: 3_600_000).map(UInt64.init) ?? b.probeInterval
        b.probeTimeout = positive(c, "probeTimeout", atMost: 3_600_000).map(UInt64.init) ?? b.probeTimeout
        b.suspicionTimeout = positive(c, "suspicionTimeout", atMost: 3_600_000).map(UInt64.init) ?? b.suspicionTimeout
        b.suspicionMaxTimeout = positive(c, "suspicionMaxTimeout", atMost: 3_600_000).map(UInt64.init)
        b.reconnectInterval = positive(c, "reconnectInterval", atMost: 3_600_000).map(UInt64.init) ?? b.reconnectInterval
        if let max = b.suspicionMaxTimeout, max < b.suspicionTimeout { fail(c, "suspicionMaxTimeout must be at least suspicionTimeout") }
        b.requestTimeout = positive(c, "requestTimeout", atMost: 86400) ?? b.requestTimeout
        b.dataLinkIdle = positive(c, "dataLinkIdle", atMost: 86400) ?? b.dataLinkIdle
        b.encrypt = onOff(c, "encryption") ?? b.encrypt
        if b.probeTimeout >= b.probeInterval { fail(c, "probeTimeout must be shorter than probeInterval") }
        for s in c.elements {
            guard inManifestNamespace(s), s.name.local == "Seed" else { fail(s, "unknown element <\(s.name.local)> in <Cluster>; expected <Seed address=\"HOST:PORT\"/>"); continue }
            attributes(s, allowed: ["address"], required: ["address"])
            if let a = s.attribute("address") {
                if parseHostPort(a) != nil { b.seeds.append(a) } else { fail(s, "address=\"\(a)\" is not HOST:PORT") }
            }
        }
        return b
    }

    /// `prefer="rdma xdp tcp"`: known plane names, each once, at least one.
    mutating func dataPlanes(_ g: Element) -> [String]? {
        guard let text = g.attribute("prefer") else { return nil }
        guard let names = ClusterBinding.planes(text) else {
            fail(g, "prefer=\"\(text)\" must name \(ClusterBinding.planesRule)")
            return nil
        }
        return names
    }

    /// "1048576", "512MiB", "4 GiB": bytes, or a number with a binary unit.
    func byteCount(_ v: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        let t = v.trimmingXMLSpace()
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let n = Int(String(t.dropLast(suffix.count)).trimmingXMLSpace()), n >= 0, n <= Int.max / scale else { return nil }
            return n * scale
        }
        return Int(t).flatMap { $0 >= 0 ? $0 : nil }
    }

    mutating func positive(_ e: Element, _ name: String, atMost limit: Int = .max) -> Int? {
        guard let v = e.attribute(name) else { return nil }
        guard let n = Int(v), n > 0, n <= limit else {
            fail(e, "\(name)=\"\(v)\" must be a positive number" + (limit < .max ? " up to \(limit)" : ""))
            return nil
        }
        return n
    }

    mutating func service(_ e: Element) -> ServiceConfig? {
        attributes(e, allowed: ["contract", "name", "durable"], required: ["contract"])
        guard let contract = e.attribute("contract") else { return nil }
        var config = ServiceConfig(contract: contract, location: location(e))
        if let name = e.attribute("name") {
            if let problem = pathProblem(name) { fail(e, "name \"\(name)\": \(problem)") } else { config.name = name }
        }
        switch e.attribute("durable") {
        case nil, "false": break
        case "true":
            config.durable = true
            if e.attribute("name") == nil { fail(e, "a durable service needs a name=\"…\": its stored state is found by it at the next start") }
        case let v?: fail(e, "durable=\"\(v)\" must be true or false")
        }
        for c in e.elements {
            guard inManifestNamespace(c) else { fail(c, "\(c.name) is not a manifest element; wrap service data in <State> or <Config>"); continue }
            switch c.name.local {
            case "Partner":
                attributes(c, allowed: ["name", "uri"], required: ["name", "uri"])
                if let n = c.attribute("name"), let u = c.attribute("uri") {
                    if config.partners[n] != nil { fail(c, "partner \"\(n)\" is named twice") }
                    config.partners[n] = u
                }
            case "State", "Config":
                attributes(c, allowed: [])
                let inner = c.elements
                if inner.count != 1 { fail(c, "<\(c.name.local)> must hold exactly one element") }
                if c.name.local == "State" { config.state = inner.first } else { config.settings = inner.first }
            default:
                fail(c, "unknown element <\(c.name.local)> in <Service>; expected <Partner>, <State> or <Config>")
            }
        }
        return config
    }

    mutating func process(_ e: Element) -> ProcessSpec? {
        attributes(e, allowed: ["name", "path", "restart"], required: ["name", "path"])
        guard let name = e.attribute("name"), let path = e.attribute("path") else { return nil }
        if !isValidNodeName(name) { fail(e, "process name \"\(name)\" must be letters, digits, '-' or '.'") }
        if !path.hasPrefix("/") { fail(e, "path=\"\(path)\" must be absolute") }
        var spec = ProcessSpec(name: name, path: path)
        if let r = e.attribute("restart") {
            if let policy = ProcessSpec.Restart(rawValue: r) { spec.restart = policy }
            else { fail(e, "restart=\"\(r)\" must be \(ProcessSpec.Restart.allCases.map(\.rawValue).joined(separator: ", "))") }
        }
        for c in e.elements {
            guard inManifestNamespace(c), c.name.local == "Arg" || c.name.local == "Env" else {
                fail(c, "unknown element <\(c.name.local)> in <Process>; expected <Arg> or <Env>"); continue
            }
            attributes(c, allowed: [])
            if c.name.local == "Arg" { spec.arguments.append(c.text) }
            else if c.text.contains("=") { spec.environment.append(c.text) }
            else { fail(c, "<Env> is NAME=VALUE, found \"\(c.text)\"") }
        }
        return spec
    }

    mutating func security(_ e: Element) -> SecurityPolicy {
        attributes(e, allowed: [])
        var policy = SecurityPolicy()
        for r in e.elements {
            guard inManifestNamespace(r) else { fail(r, "\(r.name) is not a manifest element"); continue }
            let where_ = location(r)
            switch r.name.local {
            case "Token":
                attributes(r, allowed: ["name", "secret"], required: ["name", "secret"])
                if let n = r.attribute("name"), let s = r.attribute("secret") {
                    if s.utf8.count < 16 { fail(r, "token \"\(n)\": a secret must be at least 16 characters") }
                    // Its holder would pass as the appliance's operator, allowed everything.
                    if n == "operator" { fail(r, "token name \"operator\" is reserved for the appliance's operator token (/etc/decos/operator.token); choose another name") }
                    policy.tokens.append(SecurityPolicy.Token(name: n, secret: s))
                }
            case "Register":
                attributes(r, allowed: ["contract", "names"], required: ["contract", "names"])
                if let c = r.attribute("contract"), let n = r.attribute("names") {
                    policy.registrations.append(SecurityPolicy.RegisterRule(contract: c, names: words(n), location: where_))
                }
            case "Allow", "Deny":
                attributes(r, allowed: ["id", "principals", "verbs", "paths"], required: ["principals"])
                var verbs: Set<Verb>? = nil
                if let v = r.attribute("verbs"), v != "*" {
                    var set = Set<Verb>()
                    for w in words(v) {
                        if let verb = Verb(name: w) { set.insert(verb) } else { fail(r, "unknown verb \"\(w)\"") }
                    }
                    verbs = set
                }
                let principals = words(r.attribute("principals") ?? "")
                for p in principals where !SecurityPolicy.isPrincipalPattern(p) {
                    fail(r, "principal \"\(p)\" must be anonymous, token:NAME, service:PATH, node:NAME or * (NAME and PATH may contain *)")
                }
                policy.rules.append(SecurityPolicy.AccessRule(
                    id: r.attribute("id") ?? "\(r.name.local.lowercased())@\(where_.line)",
                    allow: r.name.local == "Allow", principals: principals, verbs: verbs,
                    paths: words(r.attribute("paths") ?? "*"), location: where_))
            default:
                fail(r, "unknown element <\(r.name.local)> in <Security>; expected <Token>, <Register>, <Allow> or <Deny>")
            }
        }
        return policy
    }

    func words(_ s: String) -> [String] { s.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "," }).map(String.init) }
}

/// Why a service path is unusable, or nil if it is fine.
public func pathProblem(_ path: String) -> String? {
    guard path.hasPrefix("/") else { return "a service name is a path starting with /" }
    guard path.count > 1 else { return "/ is the gateway's directory page, not a service name" }
    guard !path.hasSuffix("/") else { return "a service name does not end with /" }
    for c in path.unicodeScalars where !(c.properties.isAlphabetic || ("0"..."9").contains(c) || "/-_.~".unicodeScalars.contains(c)) {
        return "character \"\(c)\" is not allowed in a service name"
    }
    guard !path.contains("//") else { return "a service name has no empty segments" }
    return nil
}

func isValidNodeName(_ s: String) -> Bool {
    !s.isEmpty && s.count <= 63 && s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == ".") }
}
