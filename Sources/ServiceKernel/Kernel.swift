import Infoset
import Logging
import ProcessKernel
import Storage
import Synchronization

/// What `Lookup` answers for any service.
public struct LookupResponse: Codable, Sendable {
    public var uri: String
    public var contract: String
    public var partner: [PartnerEntry]
}

public struct PartnerEntry: Codable, Sendable, Hashable {
    public var name: String
    public var uri: String
}

public struct SubscribeResponse: Codable, Sendable {
    public var subscription: UInt64
    public var publisher: String
}

/// The service kernel: loads the security manager, the URI manager and the dispatcher, creates
/// services, and routes every message. Every request ends in exactly one reply or one fault.
public final class Kernel: Sendable {
    public let node: String
    public let security: SecurityManager
    public let uris: URIManager
    public let contracts: Contracts
    public let logger: Logger
    /// Where the node's buffers live, one pool per NUMA node: services fill them in place, the
    /// data planes land them in the pool of the NIC that moved them.
    public let pools: BufferPools
    /// The first node's pool: where buffers no NIC is known to move are made.
    public var pool: BufferPool { pools.first }
    /// What `GET /metrics` shows: requests, faults and latencies by service and verb, counted here;
    /// the rest by the parts that know it.
    public let metrics: NodeMetrics
    /// Where durable services keep their state; nil: the node keeps nothing across restarts.
    public let storage: ServiceFiles?
    private let nextSubscription = Atomic<UInt64>(1)
    /// In-process consumers of other nodes' services, by the sink path their notifications are
    /// addressed to (`/.stream/N`: in no directory, reachable only as a subscriber).
    let sinks = Mutex<[String: AsyncStream<Message>.Continuation]>([:])
    /// The subscriptions this node's services and consumers hold on other nodes (Follows.swift).
    public let follows = Follows()
    private let remoteDispatcher = Mutex<(any RemoteDispatcher)?>(nil)
    /// Durable services' names while they are being created (`openStore`).
    private let creating = Mutex<Set<String>>([])

    /// The distributing kernel, once the network manager is loaded; nil keeps messages local.
    public var remote: (any RemoteDispatcher)? {
        get { remoteDispatcher.withLock { $0 } }
        set { remoteDispatcher.withLock { $0 = newValue } }
    }
    private let startedAt = ContinuousClock.now

    public init(node: String, security: SecurityManager, contracts: Contracts, logger: Logger = Logger(label: "decos"),
                pools: BufferPools = BufferPools(), metrics: NodeMetrics = NodeMetrics(), storage: ServiceFiles? = nil) {
        self.node = node
        self.storage = storage
        _ = CallClock.scale  // measured now, not in the first request
        self.metrics = metrics
        self.pools = pools
        self.security = security
        self.uris = URIManager(node: node)
        self.contracts = contracts
        self.logger = logger
        metrics.onScrape { [startedAt] m in
            m.gauge("decos_uptime_seconds").set((ContinuousClock.now - startedAt).inSeconds)
            for u in pools.usage {
                let numa = ("numa_node", String(u.node))
                m.gauge("decos_buffer_pool_bytes", [numa, ("state", "in_use")]).set(u.inUse)
                m.gauge("decos_buffer_pool_bytes", [numa, ("state", "free")]).set(u.free)
                m.gauge("decos_buffer_pool_bytes", [numa, ("state", "limit")]).set(u.limit)
                m.gauge("decos_buffer_pool_buffers", [numa]).set(u.buffers)
                m.mirror("decos_buffer_pool_refused_total", [numa], total: u.refused)
            }
        }
    }

    public var uptime: Duration { ContinuousClock.now - startedAt }

    // MARK: dispatch

    /// Delivers a message and returns its reply or fault. Never throws, never drops a request.
    /// `entered` is called once the request has its place on its service's actor (ahead of any
    /// request sent after that), if it goes to one. A request made while handling `cause`: lines
    /// logged for it carry `cause`'s MessageID when it has none of its own.
    ///
    /// The path of every local call, so it is kept short: what can be decided here is (the service,
    /// the security manager's word), and the request then enters its service's actor once
    /// (`Service.serve`), which handles it and makes the reply there. `nonisolated(nonsending)`:
    /// it runs on its caller's executor, with no switch to the global one first. Each async call
    /// that is not inlined costs a frame from the task allocator and each actor entry two executor
    /// switches (docs/performance.md, "Where a local call goes").
    nonisolated(nonsending)
    public func send(_ m: Message, as principal: Principal, for cause: RequestContext? = nil,
                     entered: (@Sendable () -> Void)? = nil) async -> Message {
        guard let path = uris.localPath(m.to) else { return await sendRemote(m, as: principal) }
        let started = metrics.enabled ? CallClock.now() : nil
        let found = uris.lookup(path)
        let reply: Message
        do throws(Fault) {
            let reg = try admitted(m, found, as: principal)
            let context = RequestContext(service: reg.path, messageID: m.messageID ?? cause?.messageID)
            switch m.verb {
            case .lookup: reply = lookup(m, of: reg)
            case .subscribe: reply = subscribe(m, to: reg)
            case .drop where !reg.essential:
                reply = await dropping(m, reg, for: Request(message: m, principal: principal, context: context))
            default:
                reply = await reg.service.serve(Request(message: m, principal: principal, context: context), as: reg,
                                                entered: entered, logger: logger)
            }
        } catch {
            reply = .faulted(error, replyingTo: m)
        }
        if let started { metrics.dispatched(found, m.verb, faulted: reply.kind == .fault, took: CallClock.nanoseconds(CallClock.now() &- started)) }
        return reply
    }

    /// A Lookup, which the kernel answers itself: the service's URI, contract and partners.
    private func lookup(_ m: Message, of reg: Registration) -> Message {
        answer(m) { () throws(Fault) in
            try infoset(LookupResponse(uri: reg.uri, contract: reg.contract,
                                       partner: reg.partners.sorted { $0.key < $1.key }.map { PartnerEntry(name: $0.key, uri: $0.value) }))
        }
    }

    /// A Subscribe, which the kernel answers itself: the subscriber named by wsa:From (or ReplyTo).
    private func subscribe(_ m: Message, to reg: Registration) -> Message {
        let named = m.from ?? m.replyTo
        let id: UInt64
        if let subscriber = named.flatMap(uris.localPath), uris.lookup(subscriber) != nil {
            id = subscribe(reg, .service(subscriber)) { [uris] n in
                guard let target = uris.lookup(subscriber) else { return false }
                await target.service.notify(n)
                return true
            }
        } else if let uri = named, uri.hasPrefix("decos://"), let remote {
            // Idempotent: a subscriber renewing its lease, or subscribing again after a false
            // death or its own restart, keeps one subscription (never two, each told twice).
            let (stream, queue) = Subscription.makeQueue()
            let (held, added) = reg.subscription(heldBy: uri) {
                Subscription(id: nextSubscription.wrappingAdd(1, ordering: .relaxed).oldValue, subscriber: .remote(uri), queue: queue)
            }
            id = held.id
            if added {
                Task {
                    for await n in stream { remote.notify(n) }
                }
            }
        } else {
            return .faulted(.invalidBody("Subscribe needs wsa:From (or ReplyTo) naming a service; HTTP clients subscribe with `decos ctl subscribe`"), replyingTo: m)
        }
        return answer(m) { () throws(Fault) in try infoset(SubscribeResponse(subscription: id, publisher: reg.uri)) }
    }

    /// A Drop of a service that is not essential: the kernel drops it.
    private func dropping(_ m: Message, _ reg: Registration, for request: Request) async -> Message {
        do throws(Fault) {
            try await drop(reg.path, for: request)
            return .response(to: m, body: nil)
        } catch {
            return .faulted(error, replyingTo: m)
        }
    }

    /// The registration found for `m`'s destination, once the security manager has approved
    /// `principal`'s verb on it.
    private func admitted(_ m: Message, _ found: Registration?, as principal: Principal) throws(Fault) -> Registration {
        guard let reg = found else { throw .unknownService(m.to.isEmpty ? "(no wsa:To)" : m.to) }
        if let denial = security.authorize(principal, m.verb, path: reg.path) { throw denial }
        return reg
    }

    /// Why `m` from `principal` would not reach a service of this node (there is none at its
    /// destination, or the principal is denied); nil if it would. A peer's request is checked so
    /// before anything is allocated or fetched for the buffers it refers to.
    public func refusal(_ m: Message, as principal: Principal) -> Fault? {
        guard let path = uris.localPath(m.to) else { return .unknownService("\(m.to) is not a service of node \(node)") }
        do throws(Fault) { _ = try admitted(m, uris.lookup(path), as: principal) } catch { return error }
        return nil
    }

    private func answer(_ m: Message, _ body: () throws(Fault) -> Element) -> Message {
        do throws(Fault) { return .response(to: m, body: try body()) } catch { return .faulted(error, replyingTo: m) }
    }

    /// Sends a verb and returns the reply body; a fault is thrown.
    public func call(_ verb: Verb, _ to: String, body: Element? = nil, as principal: Principal = .system,
                     buffers: [BufferRef] = []) async throws(Fault) -> Element? {
        try await send(Message(verb, to: to, body: body, buffers: buffers), as: principal).result()
    }

    // MARK: subscriptions

    /// Adds a subscription whose queue one task drains in order through `deliver`.
    private func subscribe(_ publisher: Registration, _ subscriber: Subscription.Subscriber,
                           deliver: @escaping @Sendable (Message) async -> Bool) -> UInt64 {
        let id = nextSubscription.wrappingAdd(1, ordering: .relaxed).oldValue
        let (stream, queue) = Subscription.makeQueue()
        publisher.add(Subscription(id: id, subscriber: subscriber, queue: queue))
        Task {
            for await n in stream where await !deliver(n) { break }
        }
        return id
    }

    /// Subscribes an in-process consumer to a service; the subscription ends when the consumer
    /// stops iterating or the service is dropped (after a final Drop notification).
    public func subscribe(_ to: String, as principal: Principal) throws(Fault) -> AsyncStream<Message> {
        guard let path = uris.localPath(to) else { throw .unreachable("\(to) is not on this node") }
        guard let reg = uris.lookup(path) else { throw .unknownService(to) }
        if let denial = security.authorize(principal, .subscribe, path: path) { throw denial }
        let id = nextSubscription.wrappingAdd(1, ordering: .relaxed).oldValue
        let (stream, queue) = Subscription.makeQueue()
        queue.onTermination = { [weak reg] _ in _ = reg?.remove(subscription: id) }
        reg.add(Subscription(id: id, subscriber: .stream, queue: queue))
        return stream
    }

    /// Subscribes an in-process consumer to a service on this node or another (`decos://b/kv`).
    /// For another node's, the Subscribe names a sink of this node as its subscriber; when the
    /// consumer stops iterating the sink goes, and the next notification to it tells the
    /// publisher to drop the subscription (the distributing kernel's unsubscribe). The stream
    /// does not end if the other node dies: watch `/os/cluster` for that.
    public func subscribe(anywhere to: String, as principal: Principal) async throws(Fault) -> AsyncStream<Message> {
        if uris.localPath(to) != nil { return try subscribe(to, as: principal) }
        let path = "/.stream/\(nextSubscription.wrappingAdd(1, ordering: .relaxed).oldValue)"
        let (stream, sink) = Subscription.makeQueue()
        sinks.withLock { $0[path] = sink }
        sink.onTermination = { [weak self] _ in
            _ = self?.sinks.withLock { $0.removeValue(forKey: path) }
            self?.follows.end(subscriber: path)
        }
        var request = Message(.subscribe, to: to)
        request.from = uris.authority + path
        if let fault = await send(request, as: principal).fault {
            sink.finish()
            throw fault
        }
        return stream
    }

    /// Lets a service announce a change that did not come through a verb (the directory does).
    public func publish(_ message: Message, from path: String) {
        uris.lookup(path)?.publish(message)
    }

    // MARK: services

    /// Builds and registers a service, then starts it. The security manager approves the name first.
    /// Made for `request` (a Create), the lines it logs name that request.
    @discardableResult
    public func create(_ config: ServiceConfig, essential: Bool = false, for request: Request? = nil) async throws(Fault) -> Registration {
        guard let factory = contracts.factories[config.contract] else {
            throw Fault(.sender, "UnknownContract", "no service implements \(config.contract); known contracts: \(contracts.contracts.joined(separator: ", "))")
        }
        if let name = config.name {
            if let problem = pathProblem(name) { throw Fault.invalidBody("name \(name): \(problem)") }
            if let denial = security.authorizeRegistration(contract: config.contract, name: name) { throw denial }
        }
        // A durable service with stored state is built without the initial one, then given its records.
        let opened = config.durable ? try await openStore(for: config) : nil
        defer { if let opened { creating.withLock { _ = $0.remove(opened.name) } } }
        do {
            return try await create(config, essential: essential, stored: opened, factory: factory, for: request)
        } catch {
            // A file this Create made holds nothing anyone was told of: it goes, so a failed Create
            // is not made again at the next start.
            if let opened, opened.records == nil { ServiceStore.remove(file: opened.journal.store.file) }
            throw error
        }
    }

    /// A durable service's file, opened, and what it held (nil: nothing yet).
    private struct OpenedStore {
        let name: String
        let journal: Journal
        let records: [ServiceStore.Record]?
    }

    private func create(_ config: ServiceConfig, essential: Bool, stored opened: OpenedStore?, factory: Contracts.Factory,
                        for request: Request?) async throws(Fault) -> Registration {
        var config = config
        if opened?.records != nil { config.state = nil }
        let service: any Service
        do {
            service = try factory(config)
        } catch let f as Fault {
            throw f
        } catch {
            throw Fault(.sender, "InvalidConfig", "\(config.contract): \(error)")
        }
        if let opened, let durable = service as? any DurableService {
            // Made at run time, it is made again at the next start; the manifest's are by the manifest.
            let recreate = request != nil ? BinaryInfoset.encode(config.recreation) : nil
            try await Self.load(durable, from: opened.journal.store, opened.records, recreate: recreate)
        }
        let journal = opened?.journal
        let reg = uris.register(preferred: config.name, contract: config.contract) { path, uri in
            Registration(path: path, uri: uri, contract: config.contract, service: service,
                         partners: config.partners, essential: essential, journal: journal)
        }
        if journal != nil, reg.path != config.name {
            _ = uris.unregister(reg.path)
            throw Fault(.sender, "NameTaken", "\(config.name ?? "") is taken: a durable service keeps its name")
        }
        if config.name == nil, let denial = security.authorizeRegistration(contract: config.contract, name: reg.path) {
            _ = uris.unregister(reg.path)
            throw denial
        }
        let context = ServiceContext(kernel: self, path: reg.path, uri: reg.uri, partners: config.partners)
        do {
            try await service.start(context)
        } catch {
            _ = uris.unregister(reg.path)
            throw error as? Fault ?? Fault(.receiver, "StartFailed", "\(reg.path) (\(config.contract)) failed to start: \(error)")
        }
        log(for: request).info("registered \(reg.uri) (\(config.contract))")
        return reg
    }

    /// A durable service's file, opened (made when new) and read, off the event loops; its name
    /// held until the Create ends, so two Creates of one name never share a file. A fault says
    /// what to change when the node has no storage or the contract keeps no durable state.
    private func openStore(for config: ServiceConfig) async throws(Fault) -> OpenedStore {
        guard let storage else {
            throw Fault(.sender, "NoStorage", "\(config.name ?? config.contract) is durable, but this node has no storage: add <Storage path=\"…\"/> to the manifest, or run with --data DIR")
        }
        guard contracts.durable.contains(config.contract) else {
            throw Fault(.sender, "NotDurable", "\(config.contract) cannot keep its state on storage: its service is not a DurableService")
        }
        guard let name = config.name else { throw .invalidBody("a durable service needs a name: its stored state is found by it") }
        guard uris.lookup(name) == nil, creating.withLock({ $0.insert(name).inserted }) else {
            throw Fault(.sender, "NameTaken", "\(name) is taken: a durable service keeps its name")
        }
        do {
            let (file, contract) = (storage.file(for: name), config.contract)
            return try await offLoop { () throws(StorageError) -> OpenedStore in
                let store = try ServiceStore(file: file, service: name, contract: contract)
                return OpenedStore(name: name, journal: Journal(store), records: try store.load())
            }
        } catch {
            creating.withLock { _ = $0.remove(name) }
            throw .storageRefused(error)
        }
    }

    /// Gives a durable service its stored records, or stores its first state when there are none.
    private static func load(_ service: some DurableService, from store: ServiceStore, _ stored: [ServiceStore.Record]?,
                             recreate: [UInt8]?) async throws(Fault) {
        do {
            if let stored {
                try await service.restoreAll(stored)
                if let recreate { try await offLoop { () throws(StorageError) in try store.remember(recreate: recreate) } }
            } else {
                let records = try await service.records().map { ServiceStore.Record(key: $0.key, value: BinaryInfoset.encode($0.record)) }
                try await offLoop { () throws(StorageError) in try store.initialize(records, recreate: recreate) }
            }
        } catch let error as StorageError {
            throw .storageRefused(error)
        } catch {
            throw .storageRefused(StorageError(.refused, file: store.file, "its records do not make a state of \(store.contract): \(error); it is kept as it is"))
        }
    }

    /// Unregisters a service, ends the subscriptions on either side, and stops it; a durable
    /// service's stored state is removed too, unless `keepingStorage` (the node is stopping). Made
    /// for `request` (a Drop), the lines it logs name that request.
    public func drop(_ path: String, for request: Request? = nil, keepingStorage: Bool = false) async throws(Fault) {
        guard let reg = uris.unregister(path) else { throw .unknownService(path) }
        var ended = Message(.drop, to: "")
        ended.kind = .notification
        ended.from = reg.uri
        for s in reg.removeAllSubscriptions() {
            ended.to = s.subscriberPath ?? ""
            s.queue.yield(ended)
            s.queue.finish()
        }
        for other in uris.registrations {
            for s in other.removeSubscriptions(of: path) { s.queue.finish() }
        }
        follows.end(subscriber: path)
        await reg.service.stop()
        if let journal = reg.journal, !keepingStorage { ServiceStore.remove(file: journal.store.file) }
        metrics.forget(reg)
        log(for: request).info("dropped \(reg.uri)")
    }

    /// The kernel's logger, naming `request` on each line if there is one.
    private func log(for request: Request?) -> Logger {
        request.map { logger.handling($0) } ?? logger
    }

    /// Drops every service, newest first.
    public func shutdown() async {
        for reg in uris.registrations.reversed() {
            try? await drop(reg.path, keepingStorage: true)
        }
    }
}
