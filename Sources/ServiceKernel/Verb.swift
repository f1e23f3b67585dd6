/// The DSSP verbs. A message's WS-Addressing Action is `urn:decos:verb:<Verb>`; its reply's is
/// `urn:decos:verb:<Verb>Response`.
public enum Verb: String, CaseIterable, Sendable, Hashable {
    case create = "Create"
    case drop = "Drop"
    case lookup = "Lookup"
    case get = "Get"
    case query = "Query"
    case insert = "Insert"
    case update = "Update"
    case upsert = "Upsert"
    case delete = "Delete"
    case replace = "Replace"
    case submit = "Submit"
    case subscribe = "Subscribe"

    public static let actionPrefix = "urn:decos:verb:"

    public var action: String { Verb.actionPrefix + rawValue }
    public var responseAction: String { Verb.actionPrefix + rawValue + "Response" }

    /// Verbs whose success changes a service's state; subscribers are notified of them.
    public var changesState: Bool {
        switch self {
        case .insert, .update, .upsert, .delete, .replace: true
        default: false
        }
    }

    /// Verbs that only read; the default policy for an exposed gateway allows only these.
    public var isReadOnly: Bool { self == .get || self == .query || self == .lookup }

    /// Accepts `Get`, `get` and `urn:decos:verb:Get`.
    public init?(name: String) {
        var s = Substring(name)
        if s.hasPrefix(Verb.actionPrefix) { s = s.dropFirst(Verb.actionPrefix.count) }
        guard let v = Verb.allCases.first(where: { $0.rawValue.lowercased() == s.lowercased() }) else { return nil }
        self = v
    }

    /// Parses a request action URI exactly.
    public init?(action: String) {
        guard action.hasPrefix(Verb.actionPrefix),
              let v = Verb(rawValue: String(action.dropFirst(Verb.actionPrefix.count))) else { return nil }
        self = v
    }
}
