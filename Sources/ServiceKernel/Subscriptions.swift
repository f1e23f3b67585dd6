import Infoset
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

    func removeAllSubscriptions() -> [Subscription] {
        subscriptions.withLock { subs in
            defer { subs.removeAll() }
            return subs
        }
    }

    /// Queues `message` as a notification to every subscriber.
    func publish(_ message: Message) {
        subscriptions.withLock { subs in
            guard !subs.isEmpty else { return }
            var n = message
            n.kind = .notification
            n.from = uri
            for s in subs {
                n.to = s.subscriberPath ?? ""
                s.queue.yield(n)
            }
        }
    }
}
