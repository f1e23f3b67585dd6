import Storage
import Infoset
import Synchronization

/// A row of the mapping table as the directory shows it.
public struct DirectoryEntry: Codable, Sendable, Hashable {
    public var uri: String
    public var path: String
    public var contract: String
    public var node: String

    public init(uri: String, path: String, contract: String, node: String) {
        self.uri = uri
        self.path = path
        self.contract = contract
        self.node = node
    }
}

/// A change to the mapping table, in the order it happened.
public enum TableChange: Sendable, Hashable {
    case registered(DirectoryEntry)
    case unregistered(DirectoryEntry)
}

/// A registered service: its URI, its port (the actor), and who subscribes to it.
public final class Registration: Sendable {
    public let path: String
    public let uri: String
    public let contract: String
    public let service: any Service
    public let partners: [String: String]
    /// System services cannot be dropped; a Drop sent to one is handed to the service itself.
    public let essential: Bool
    let subscriptions = Mutex<[Subscription]>([])
    /// Its requests' counters and latency histogram, by verb (NodeMetrics).
    let meters: VerbMeters
    /// Where its changes are stored before their replies, when it is durable (Durable.swift).
    public let journal: Journal?

    init(path: String, uri: String, contract: String, service: any Service, partners: [String: String], essential: Bool,
         journal: Journal? = nil) {
        self.journal = journal
        self.path = path
        self.uri = uri
        self.contract = contract
        self.service = service
        self.partners = partners
        self.essential = essential
        meters = VerbMeters(path: path)
    }

    func entry(node: String) -> DirectoryEntry { DirectoryEntry(uri: uri, path: path, contract: contract, node: node) }
}

/// The URI manager: maps each path of this node to its registration, hands out unique names,
/// and tells observers of every change in order.
public final class URIManager: Sendable {
    public let node: String
    private struct State {
        var table: [String: Registration] = [:]
        /// Registration order; shutdown drops in reverse.
        var order: [String] = []
        var observers: [UInt64: @Sendable (TableChange) -> Void] = [:]
        var nextObserver: UInt64 = 0
    }
    private let state = Mutex(State())
    /// Held across a change and the calls to observers, so they see changes one at a time, in order.
    private let serial = Mutex(())

    public init(node: String) {
        self.node = node
        nodeBytes = Array(node.utf8)
    }

    /// The node's name as bytes, to compare URIs' hosts with where they lie.
    private let nodeBytes: [UInt8]
    private static let localhost = Array("localhost".utf8)

    public var authority: String { "decos://\(node)" }

    /// The path a message's destination names on this node, or nil if it names another node.
    /// Compares the host in place: a URI for another node costs no string at all.
    @inline(__always)
    public func localPath(_ to: String) -> String? {
        if to.utf8.first == UInt8(ascii: "/") { return to }
        var to = to
        return to.withUTF8 { b -> String? in
            guard let slash = Self.hostEnd(b) else { return nil }
            let host = UnsafeBufferPointer(rebasing: b[8..<slash])
            guard host.isEmpty || host.elementsEqual(nodeBytes) || host.elementsEqual(Self.localhost) else { return nil }
            return slash == b.count ? "/" : String(decoding: UnsafeBufferPointer(rebasing: b[slash...]), as: UTF8.self)
        }
    }

    /// Where the host of a `decos://host/path` URI ends (its path's "/", or the end); nil if the
    /// bytes are not such a URI.
    private static func hostEnd(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        guard b.count >= 8, UnsafeRawPointer(b.baseAddress!).loadUnaligned(as: UInt64.self) == scheme else { return nil }
        var slash = 8
        while slash < b.count && b[slash] != UInt8(ascii: "/") { slash += 1 }
        return slash
    }

    /// The host of a `decos://host/path` URI (empty for `decos:///path`); nil for any other string.
    /// Reads the bytes in place: every message to another node passes through here.
    public static func host(of uri: String) -> String? {
        var uri = uri
        return uri.withUTF8 { b in hostEnd(b).map { String(decoding: UnsafeBufferPointer(rebasing: b[8..<$0]), as: UTF8.self) } }
    }

    /// "decos://" as the eight bytes it is in memory.
    private static let scheme: UInt64 = Array("decos://".utf8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }

    @inline(__always)
    public func lookup(_ path: String) -> Registration? {
        state.withLock { $0.table[path] }
    }

    public var registrations: [Registration] {
        state.withLock { s in s.order.compactMap { s.table[$0] } }
    }

    public var entries: [DirectoryEntry] { registrations.map { $0.entry(node: node) } }

    /// Claims `preferred` if free, else a generated unique name from the contract's last segment.
    func register(preferred: String?, contract: String, make: (String, String) -> Registration) -> Registration {
        serial.withLock { _ in
            let (r, observers) = state.withLock { s in
            var path = preferred ?? ""
            if path.isEmpty || s.table[path] != nil {
                let base = preferred ?? "/" + (contract.split(whereSeparator: { $0 == ":" || $0 == "/" }).last.map(String.init) ?? "service")
                var n = 2
                while s.table["\(base)-\(n)"] != nil { n += 1 }
                path = "\(base)-\(n)"
            }
            let r = make(path, authority + path)
            s.table[path] = r
            s.order.append(path)
            return (r, Array(s.observers.values))
            }
            for o in observers { o(.registered(r.entry(node: node))) }
            return r
        }
    }

    func unregister(_ path: String) -> Registration? {
        serial.withLock { _ in
            let removed = state.withLock { s -> (Registration, [@Sendable (TableChange) -> Void])? in
                guard let r = s.table.removeValue(forKey: path) else { return nil }
                s.order.removeAll { $0 == path }
                return (r, Array(s.observers.values))
            }
            guard let (r, observers) = removed else { return nil }
            for o in observers { o(.unregistered(r.entry(node: node))) }
            return r
        }
    }

    /// Calls `observer` with every change from now on, in order, right after the change is made.
    /// The observer must not register or unregister services itself.
    @discardableResult
    public func observe(_ observer: @escaping @Sendable (TableChange) -> Void) -> UInt64 {
        state.withLock { s in
            let id = s.nextObserver
            s.nextObserver += 1
            s.observers[id] = observer
            return id
        }
    }

    public func stopObserving(_ id: UInt64) {
        _ = state.withLock { $0.observers.removeValue(forKey: id) }
    }
}
