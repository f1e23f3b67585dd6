import Infoset
import ServiceKernel

/// `/counter` (`urn:decos:examples:counter`): Get → `<CounterState><Value>n</Value></CounterState>`;
/// Update `<Increment><By>n</By></Increment>` adds n; Replace sets the whole state. Durable, its
/// state is one record, "state".
public actor Counter: DurableService {
    public static let contract = "urn:decos:examples:counter"
    public static let operations = [
        ServiceOperation(.get, returns: CounterState.self),
        ServiceOperation(.update, takes: Increment.self, returns: CounterState.self),
        ServiceOperation(.replace, takes: CounterState.self, returns: CounterState.self),
    ]

    public struct CounterState: Codable, Sendable {
        public var value: Int
        public init(value: Int) { self.value = value }
    }
    public struct Increment: Codable, Sendable {
        public var by: Int
        public init(by: Int) { self.by = by }
    }

    @ServiceState var state: CounterState

    public init(config: ServiceConfig) throws {
        _state = ServiceState(wrappedValue: try config.initialState(CounterState.self) ?? CounterState(value: 0))
    }

    public func handle(_ request: Request) throws -> Element? {
        switch request.verb {
        case .get:
            return try $state.infoset()
        case .update:
            let (sum, overflow) = state.value.addingReportingOverflow(try request.decode(Increment.self).by)
            guard !overflow else { throw Fault.invalidBody("the counter would overflow") }
            state.value = sum
            return try stored(request)
        case .replace:
            state = try request.decode(CounterState.self)
            return try stored(request)
        default:
            throw Fault.actionNotSupported(request.verb, "/counter")
        }
    }

    /// The new state, kept by `request` (when the counter is durable) and returned.
    private func stored(_ request: Request) throws(Fault) -> Element {
        let e = try $state.infoset()
        request.store(e, under: "state")
        return e
    }

    public func records() throws -> [StoredRecord] { [StoredRecord("state", try $state.infoset())] }

    public func restore(_ key: String, _ record: Element?) throws {
        guard key == "state" else { return }
        state = try record.map { try InfosetDecoder().decode(CounterState.self, from: $0) } ?? CounterState(value: 0)
    }
}

/// `/kv` (`urn:decos:examples:kv`): a key-value store. Insert (new keys only), Update (existing
/// only), Upsert and Delete take `<Entry><Key>k</Key><Value>v</Value></Entry>`; Query takes
/// `<KVQuery><Prefix>p</Prefix></KVQuery>`; Get returns `<KVState>` with every entry, by key.
/// Durable, each key is one record, its `<Entry>`.
public actor KeyValueStore: DurableService {
    public static let contract = "urn:decos:examples:kv"
    public static let operations = [
        ServiceOperation(.get, returns: KVState.self),
        ServiceOperation(.query, takes: KVQuery.self, returns: KVState.self),
        ServiceOperation(.insert, takes: Entry.self, returns: Entry.self),
        ServiceOperation(.update, takes: Entry.self, returns: Entry.self),
        ServiceOperation(.upsert, takes: Entry.self, returns: Entry.self),
        ServiceOperation(.delete, takes: Entry.self, returns: Entry.self),
        ServiceOperation(.replace, takes: KVState.self, returns: KVState.self),
    ]

    public struct Entry: Codable, Sendable, Hashable {
        public var key: String
        public var value: String?
        public init(key: String, value: String?) {
            self.key = key
            self.value = value
        }
    }
    public struct KVState: Codable, Sendable { public var entry: [Entry] }
    public struct KVQuery: Codable, Sendable { public var prefix: String? }

    private var store: [String: String] = [:]

    public init(config: ServiceConfig) throws {
        for e in try config.initialState(KVState.self)?.entry ?? [] { store[e.key] = e.value ?? "" }
    }

    private func snapshot(_ include: (String) -> Bool = { _ in true }) throws(Fault) -> Element {
        try infoset(KVState(entry: store.keys.sorted().filter(include).map { Entry(key: $0, value: store[$0]) }))
    }

    public func handle(_ request: Request) throws -> Element? {
        switch request.verb {
        case .get:
            return try snapshot()
        case .query:
            let q = try request.decodeIfPresent(KVQuery.self)
            return try snapshot { q?.prefix.map($0.hasPrefix) ?? true }
        case .insert, .update, .upsert:
            let e = try request.decode(Entry.self)
            guard let value = e.value else { throw Fault.invalidBody("\(request.verb.rawValue) needs <Value>") }
            if request.verb == .insert, store[e.key] != nil { throw Fault(.sender, "Exists", "key \"\(e.key)\" already exists; use Update or Upsert") }
            if request.verb == .update, store[e.key] == nil { throw Fault(.sender, "NotFound", "key \"\(e.key)\" does not exist; use Insert or Upsert") }
            store[e.key] = value
            let entry = try infoset(e)
            request.store(entry, under: e.key)
            return entry
        case .delete:
            let e = try request.decode(Entry.self)
            guard let old = store.removeValue(forKey: e.key) else { throw Fault(.sender, "NotFound", "key \"\(e.key)\" does not exist") }
            request.erase(e.key)
            return try infoset(Entry(key: e.key, value: old))
        case .replace:
            let s = try request.decode(KVState.self)
            let replaced = Dictionary(s.entry.map { ($0.key, $0.value ?? "") }) { _, last in last }
            for key in store.keys where replaced[key] == nil { request.erase(key) }
            for (key, value) in replaced { request.store(try infoset(Entry(key: key, value: value)), under: key) }
            store = replaced
            return try snapshot()
        default:
            throw Fault.actionNotSupported(request.verb, "/kv")
        }
    }
}

extension KeyValueStore {
    public func records() throws -> [StoredRecord] {
        try store.keys.sorted().map { StoredRecord($0, try infoset(Entry(key: $0, value: store[$0]))) }
    }

    public func restore(_ key: String, _ record: Element?) throws {
        // Read as the element it is (not through Codable): a restart restores every key this way.
        guard let record else { store[key] = nil; return }
        store[key] = record.child("Value")?.text ?? ""
    }
}

/// `/echo` (`urn:decos:examples:echo`): Submit returns its body and its buffers.
public actor Echo: Service {
    public static let contract = "urn:decos:examples:echo"
    public static let operations = [ServiceOperation(.submit, takes: .any, returns: .any)]

    public init(config: ServiceConfig) {}

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .submit else { throw Fault.actionNotSupported(request.verb, "/echo") }
        for b in request.message.buffers { request.attach(b) }
        return request.body
    }
}

/// Contracts of the system services every node runs, and the examples.
public enum StandardContracts {
    /// The system services and the paths they always take.
    public static let system: [(type: any Service.Type, path: String)] = [
        (Directory.self, "/directory"),
        (Constructor.self, "/constructor"),
        (ManifestLoader.self, "/manifestloader"),
        (NodeService.self, "/os/node"),
        (ProcessesService.self, "/os/processes"),
        (DevicesService.self, "/os/devices"),
        (LinksService.self, "/os/links"),
        (ModulesService.self, "/os/modules"),
        (RDMAService.self, "/os/rdma"),
        (MemoryService.self, "/os/memory"),
        (StorageService.self, "/os/storage"),
        (LogService.self, "/os/log"),
    ]

    public static let examples: [any Service.Type] = [Counter.self, KeyValueStore.self, Echo.self]

    public static var all: Contracts { Contracts(system.map(\.type) + examples) }
}
