import Infoset
import Synchronization

/// The subscriptions this node's services and in-process consumers hold on other nodes' services,
/// kept on the subscriber's side so that they outlive what the cluster outlives (docs/services.md,
/// "Subscriptions across nodes"):
///
/// - A subscription is a lease: the publisher ends one not renewed within `Subscription.lease`,
///   so one whose subscriber's node vanished does not live on a publisher that never publishes;
///   this node renews each every `Follows.renewInterval`, and again at once when the publisher's
///   node comes back (a false death refuted, a partition healed) or restarts, or when this node
///   had to refute its own death. A Subscribe is idempotent at the publisher: a renewal that finds
///   its subscription answers with its number; one that finds it gone makes a new one.
/// - Notifications are numbered per subscription. A number skipped, or a subscription found gone
///   and made anew, is told to the subscriber as a gap (`Message.gap`): never silently, so it can
///   read the state afresh.
/// - A notification is taken only from the node whose service this node subscribed to.
public final class Follows: Sendable {
    /// How often each subscription on another node is renewed (milliseconds).
    public static let renewInterval: UInt64 = 10_000

    public struct Follow: Sendable, Hashable {
        /// The local path notifications go to: a service, or a consumer's sink.
        public var subscriber: String
        /// The publisher's URI, `decos://node/path`.
        public var publisher: String
        public var principal: Principal
        /// The publisher's number for the subscription; 0 until its first answer.
        public var subscription: UInt64 = 0
        /// The last notification's number.
        public var last: UInt64 = 0
    }

    private struct Key: Hashable {
        var subscriber: String
        var publisher: String
    }

    private let follows = Mutex<[Key: Follow]>([:])

    public init() {}

    public var all: [Follow] { follows.withLock { Array($0.values) } }

    /// Those on `node`'s services.
    func on(node: String) -> [Follow] {
        let prefix = "decos://\(node)/"
        return follows.withLock { $0.values.filter { $0.publisher.hasPrefix(prefix) } }
    }

    /// Notes a Subscribe about to go out, before its answer: a notification may come first.
    func begin(subscriber: String, publisher: String, as principal: Principal) {
        follows.withLock { f in
            let key = Key(subscriber: subscriber, publisher: publisher)
            if f[key] == nil { f[key] = Follow(subscriber: subscriber, publisher: publisher, principal: principal) }
        }
    }

    /// The publisher answered: `id` is its number for the subscription. True when it differs from
    /// the one it had before — the old subscription was lost, and with it what it would have told.
    func established(subscriber: String, publisher: String, id: UInt64) -> Bool {
        follows.withLock { f in
            let key = Key(subscriber: subscriber, publisher: publisher)
            guard let old = f[key] else { return false }
            f[key]!.subscription = id
            guard old.subscription != 0, old.subscription != id else { return false }
            f[key]!.last = 0
            return true
        }
    }

    /// The Subscribe was refused: a subscription never made is forgotten; one that was made is
    /// kept, and its next renewal tries again.
    func refused(subscriber: String, publisher: String) {
        follows.withLock { f in
            let key = Key(subscriber: subscriber, publisher: publisher)
            if f[key]?.subscription == 0 { f[key] = nil }
        }
    }

    func end(subscriber: String) {
        follows.withLock { f in f = f.filter { $0.key.subscriber != subscriber } }
    }

    @discardableResult
    func end(subscriber: String, publisher: String) -> Follow? {
        follows.withLock { $0.removeValue(forKey: Key(subscriber: subscriber, publisher: publisher)) }
    }

    func holds(subscriber: String, publisher: String) -> Bool {
        follows.withLock { $0[Key(subscriber: subscriber, publisher: publisher)] != nil }
    }

    enum Arrival: Equatable {
        /// Nothing here subscribed to that service on that node: the notification is not taken.
        case unknown
        /// Taken; `gap` when notifications went missing before it.
        case taken(gap: Bool)
    }

    /// Whether a notification from `node` to the local `subscriber` is one this node asked for,
    /// and whether any went missing before it.
    func arrival(of m: Message, to subscriber: String, from node: String) -> Arrival {
        guard let publisher = m.from, URIManager.host(of: publisher) == node else { return .unknown }
        return follows.withLock { f in
            let key = Key(subscriber: subscriber, publisher: publisher)
            guard let follow = f[key] else { return .unknown }
            if m.verb == .drop, m.kind == .notification {
                // The publisher's last word: its service is gone.
                f[key] = nil
                return .taken(gap: false)
            }
            guard m.sequence != 0 else { return .taken(gap: false) }
            let gap = follow.last != 0 && m.sequence != follow.last &+ 1
            f[key]!.last = m.sequence
            return .taken(gap: gap)
        }
    }
}

extension Message {
    /// What a subscriber is told when notifications of `publisher` went missing (a subscription
    /// lost with a false death, a partition, or the publisher's restart, or one dropped on the
    /// way): a Subscribe notification whose body is `<Gap><Publisher>URI</Publisher></Gap>`. Read
    /// the state again; what follows it is in order again.
    public static func gap(to subscriber: String, publisher: String) -> Message {
        var m = Message(.subscribe, to: subscriber, body: Element("Gap", children: [.element(Element("Publisher", text: publisher))]), kind: .notification)
        m.from = publisher
        return m
    }

    /// Whether this is a gap notification (`gap(to:publisher:)`). A notification read back from
    /// SOAP (a `decos ctl subscribe` stream) is a request by its envelope: both kinds count.
    public var isGap: Bool { (kind == .notification || kind == .request) && verb == .subscribe && body?.name.local == "Gap" }
}
