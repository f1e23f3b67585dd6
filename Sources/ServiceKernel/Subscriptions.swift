import Infoset
import Logging
import Synchronization

/// One subscription: where a service's state-changing messages go. Each has its own queue, so
/// notifications reach a subscriber in the order the changes happened.
final class Subscription: Sendable {
    enum Subscriber: Sendable {
        /// A local service, told through `notify`.
        case service(String)
        /// A service on another node, by URI, told through the distributing kernel.
        case remote(String)
        /// An in-process stream (a gateway client, a test).
        case stream
    }

    let id: UInt64
    let subscriber: Subscriber
    let queue: AsyncStream<Message>.Continuation
    /// The number of the last notification queued for it (`Message.sequence`).
    private let numbered = Atomic<UInt64>(0)
    /// When a remote subscriber last renewed it, in `Subscription.clock` milliseconds.
    private let renewedAt = Atomic<UInt64>(Subscription.clock())

    /// How long a remote subscription lives without a renewal (`Follows.renewInterval` × 3).
    public static let lease: UInt64 = Follows.renewInterval * 3

    private static let started = ContinuousClock.now
    /// Milliseconds since the process started.
    static func clock() -> UInt64 {
        let d = ContinuousClock.now - started
        return UInt64(d.components.seconds) * 1000 + UInt64(d.components.attoseconds / 1_000_000_000_000_000)
    }

    func renew() { renewedAt.store(Subscription.clock(), ordering: .relaxed) }

    /// A remote subscription not renewed within its lease: its subscriber's node let it go.
    func lapsed(at now: UInt64) -> Bool {
        guard case .remote = subscriber else { return false }
        return now > renewedAt.load(ordering: .relaxed) + Subscription.lease
    }

    func nextNumber() -> UInt64 { numbered.add(1, ordering: .relaxed).newValue }

    /// The most notifications waiting for one subscriber. One that falls this far behind is
    /// dropped, with a log line, rather than allowed to grow the publisher's memory.
    public static let maxBacklog = 10_000

    static func makeQueue() -> (AsyncStream<Message>, AsyncStream<Message>.Continuation) {
        AsyncStream<Message>.makeStream(bufferingPolicy: .bufferingOldest(maxBacklog))
    }

    init(id: UInt64, subscriber: Subscriber, queue: AsyncStream<Message>.Continuation) {
        self.id = id
        self.subscriber = subscriber
        self.queue = queue
    }

    /// Where notifications are addressed: a local path or a remote URI.
    var subscriberPath: String? {
        switch subscriber {
        case .service(let p), .remote(let p): p
        case .stream: nil
        }
    }
}

extension Registration {
    func add(_ s: Subscription) { subscriptions.withLock { $0.append(s) } }

    func remove(subscription id: UInt64) -> Subscription? {
        subscriptions.withLock { subs in
            guard let i = subs.firstIndex(where: { $0.id == id }) else { return nil }
            return subs.remove(at: i)
        }
    }

    /// Removes, and returns, the subscriptions held by the service at `path`.
    func removeSubscriptions(of path: String) -> [Subscription] {
        removeSubscriptions { $0 == path }
    }

    func removeSubscriptions(where held: (String) -> Bool) -> [Subscription] {
        subscriptions.withLock { subs in
            let gone = subs.filter { $0.subscriberPath.map(held) ?? false }
            subs.removeAll { $0.subscriberPath.map(held) ?? false }
            return gone
        }
    }

    /// The subscription `uri` (a remote subscriber) holds here, renewed; or the one `make` makes,
    /// added — one step under the lock, so two Subscribes at once still make one subscription.
    func subscription(heldBy uri: String, orAdd make: () -> Subscription) -> (Subscription, added: Bool) {
        subscriptions.withLock { subs in
            if let held = subs.first(where: { if case .remote(let held) = $0.subscriber { held == uri } else { false } }) {
                held.renew()
                return (held, false)
            }
            let s = make()
            subs.append(s)
            return (s, true)
        }
    }

    /// Removes, and returns, the remote subscriptions whose lease ran out.
    func removeLapsed(at now: UInt64) -> [Subscription] {
        subscriptions.withLock { subs in
            let gone = subs.filter { $0.lapsed(at: now) }
            if !gone.isEmpty { subs.removeAll { $0.lapsed(at: now) } }
            return gone
        }
    }

    func removeAllSubscriptions() -> [Subscription] {
        subscriptions.withLock { subs in
            defer { subs.removeAll() }
            return subs
        }
    }

    /// Queues `message` as a notification to every subscriber; a subscriber whose queue is full
    /// is dropped (its queue ends after what it holds, and the drop is logged).
    var hasSubscribers: Bool { subscriptions.withLock { !$0.isEmpty } }

    @usableFromInline
    func publish(_ message: Message) {
        let dropped = subscriptions.withLock { subs -> [Subscription] in
            guard !subs.isEmpty else { return [] }
            var n = message
            n.kind = .notification
            n.from = uri
            var full: [Subscription] = []
            for s in subs {
                n.to = s.subscriberPath ?? ""
                // Numbered where it can go missing: on its way to another node.
                if case .remote = s.subscriber { n.sequence = s.nextNumber() } else if n.sequence != 0 { n.sequence = 0 }
                if case .dropped = s.queue.yield(n) { full.append(s) }
            }
            subs.removeAll { s in full.contains { $0 === s } }
            return full
        }
        for s in dropped {
            s.queue.finish()
            Logger(label: "decos").warning("dropped the subscription of \(s.subscriberPath ?? "an in-process consumer") to \(uri): \(Subscription.maxBacklog) notifications were waiting for it")
        }
    }
}
