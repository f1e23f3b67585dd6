import Infoset

/// The manifest's security rules. With no `<Security>` element the policy is `open`: every
/// principal may send every verb, which is safe only while the gateway listens on loopback; an
/// exposed gateway without rules lets anonymous clients read (Get, Query, Lookup) and nothing else.
public struct SecurityPolicy: Sendable {
    public struct Token: Sendable, Hashable {
        public var name: String
        public var secret: String

        public init(name: String, secret: String) {
            self.name = name
            self.secret = secret
        }
    }

    /// Which names a contract may register under. Without any such rule, any name is allowed.
    public struct RegisterRule: Sendable {
        public var contract: String
        public var names: [String]
        public var location: SourceLocation?

        public init(contract: String, names: [String], location: SourceLocation? = nil) {
            self.contract = contract
            self.names = names
            self.location = location
        }
    }

    /// Allow or deny some verbs on some paths to some principals. Rules are tried in order; the first
    /// that matches decides; when none matches, the request is denied.
    public struct AccessRule: Sendable {
        public var id: String
        public var allow: Bool
        public var principals: [String]
        /// nil means every verb.
        public var verbs: Set<Verb>?
        public var paths: [String]
        public var location: SourceLocation?

        public init(id: String, allow: Bool, principals: [String], verbs: Set<Verb>? = nil, paths: [String] = ["*"],
                    location: SourceLocation? = nil) {
            self.id = id
            self.allow = allow
            self.principals = principals
            self.verbs = verbs
            self.paths = paths
            self.location = location
        }

        func matches(_ principal: Principal, _ verb: Verb, _ path: String) -> Bool {
            (verbs?.contains(verb) ?? true)
                && principals.contains { SecurityPolicy.principal(principal, matches: $0) }
                && paths.contains { glob($0, path) }
        }
    }

    public var tokens: [Token] = []
    public var registrations: [RegisterRule] = []
    public var rules: [AccessRule] = []

    public init(tokens: [Token] = [], registrations: [RegisterRule] = [], rules: [AccessRule] = []) {
        self.tokens = tokens
        self.registrations = registrations
        self.rules = rules
    }

    static func isPrincipalPattern(_ p: String) -> Bool {
        p == "*" || p == "anonymous" || p == "system" || p.hasPrefix("token:") || p.hasPrefix("service:") || p.hasPrefix("node:")
    }

    static func principal(_ principal: Principal, matches pattern: String) -> Bool {
        if pattern == "*" { return true }
        switch principal {
        case .system: return pattern == "system"
        case .anonymous: return pattern == "anonymous"
        case .token(let n): return pattern.hasPrefix("token:") && glob(String(pattern.dropFirst(6)), n)
        case .service(let p): return pattern.hasPrefix("service:") && glob(String(pattern.dropFirst(8)), p)
        case .peer(let n): return pattern.hasPrefix("node:") && glob(String(pattern.dropFirst(5)), n)
        }
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
func glob(_ pattern: String, _ text: String) -> Bool {
    let p = Array(pattern.utf8), t = Array(text.utf8)
    var pi = 0, ti = 0, star = -1, mark = 0
    while ti < t.count {
        if pi < p.count, p[pi] != UInt8(ascii: "*"), p[pi] == t[ti] { pi += 1; ti += 1 }
        else if pi < p.count, p[pi] == UInt8(ascii: "*") { star = pi; mark = ti; pi += 1 }
        else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
        else { return false }
    }
    while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

/// Approves registrations and messages. A denial is a fault that names the rule behind it.
public final class SecurityManager: Sendable {
    public let policy: SecurityPolicy?
    /// True when the gateway listens beyond loopback: then the open policy becomes read-only for anonymous clients.
    public let exposed: Bool
    /// The operator's secret (an appliance image carries it): `token:operator`, allowed every verb
    /// on every path, before any rule is tried.
    let operatorSecret: String?

    public init(policy: SecurityPolicy?, exposed: Bool, operatorSecret: String? = nil) {
        self.policy = policy
        self.exposed = exposed
        self.operatorSecret = operatorSecret
    }

    /// The principal a bearer token stands for, or nil if the token is unknown.
    public func principal(forToken secret: String) -> Principal? {
        if let operatorSecret, constantTimeEqual(operatorSecret, secret) { return .token("operator") }
        guard let token = policy?.tokens.first(where: { constantTimeEqual($0.secret, secret) }) else { return nil }
        return .token(token.name)
    }

    public func authorizeRegistration(contract: String, name: String) -> Fault? {
        guard let policy, !policy.registrations.isEmpty else { return nil }
        let rules = policy.registrations.filter { $0.contract == contract }
        guard !rules.isEmpty else {
            return .denied("contract \(contract) may not register \(name): no <Register> rule names this contract")
        }
        if rules.contains(where: { $0.names.contains { glob($0, name) } }) { return nil }
        let at = rules.compactMap { $0.location?.description }.joined(separator: ", ")
        return .denied("contract \(contract) may not register \(name): its <Register> rule (\(at)) allows \(rules.flatMap(\.names).joined(separator: " "))")
    }

    /// Nil when `principal` may send `verb` to `path`; otherwise the fault to answer with.
    @inline(__always)
    public func authorize(_ principal: Principal, _ verb: Verb, path: String) -> Fault? {
        if case .system = principal { return nil }
        if operatorSecret != nil, case .token("operator") = principal { return nil }
        switch principal {
        // Code of this binary, and peers, which checked their own client against this same rule:
        // the remote and local call paths pay nothing for it.
        case .service, .peer: break
        default:
            if SecurityManager.controlsNode(verb, path: path) {
                return .denied("\(verb.rawValue) on \(path) changes the node itself: only the operator token may (Authorization: Bearer; `decos run` says where it wrote the token)")
            }
        }
        guard let policy else {
            if exposed, principal == .anonymous, !verb.isReadOnly {
                return .denied("anonymous clients may only read (Get, Query, Lookup): the gateway listens beyond loopback and the manifest has no <Security> rules (default policy 'exposed-read-only')")
            }
            return nil
        }
        for rule in policy.rules where rule.matches(principal, verb, path) {
            if rule.allow { return nil }
            return .denied("\(principal) may not \(verb.rawValue) \(path): denied by rule '\(rule.id)'\(rule.location.map { " at \($0)" } ?? "")")
        }
        return .denied("\(principal) may not \(verb.rawValue) \(path): no rule allows it (rules deny by default)")
    }
}

extension SecurityManager {
    /// Whether `verb` on `path` (`/os/node`, or `decos://b/os/node` through another node) changes
    /// the node itself — power, processes, its manifest, its system services — and so needs the
    /// operator whatever the rules say. Subscribe only listens.
    public static func controlsNode(_ verb: Verb, path: String) -> Bool {
        guard !verb.isReadOnly, verb != .subscribe else { return false }
        var local = Substring(path)
        if local.hasPrefix("decos://") {
            local = local.dropFirst(8)
            local = local[(local.firstIndex(of: "/") ?? local.endIndex)...]
        }
        return local.hasPrefix("/os/") || local == "/manifestloader"
    }
}

/// Compares secrets (tokens, MACs) without leaking through timing where they differ.
public func constantTimeEqual(_ x: [UInt8], _ y: [UInt8]) -> Bool {
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
    return diff == 0
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }
