import Infoset
import Synchronization

/// What the kernel needs of the distributing kernel: messages to other nodes, and the other nodes'
/// services for the directory. ServiceKernel knows nothing of sockets; this is the seam.
public protocol RemoteDispatcher: AnyObject, Sendable {
    /// Delivers a message to a service on another node and returns its reply or a fault.
    func send(_ m: Message, as principal: Principal) async -> Message
    /// Delivers a notification to a subscriber on another node; no reply.
    func notify(_ m: Message)
    /// Every service the other nodes have registered.
    var remoteEntries: [DirectoryEntry] { get }
}

extension Kernel {
    /// Makes a local path in a header a URI other nodes can answer to.
    public func absolute(_ s: String?) -> String? {
        guard let s, s.utf8.first == UInt8(ascii: "/") else { return s }
        return uris.authority + s
    }

    @inline(__always)
    func sendRemote(_ m: Message, as principal: Principal) async -> Message {
        guard let remote else {
            return .faulted(.unreachable("\(m.to) is not on this node (\(uris.authority)) and this node has no peers"), replyingTo: m)
        }
        // This node answers for its own clients: the peer will only see `node:THIS`, which it may
        // trust with more than an anonymous client of ours should get. Rules match the target's URI.
        if let denial = security.authorize(principal, m.verb, path: m.to) {
            return .faulted(denial, replyingTo: m)
        }
        var out = m
        out.from = absolute(m.from)
        out.replyTo = absolute(m.replyTo)
        guard m.verb == .subscribe, let subscriber = (m.from ?? m.replyTo).flatMap(uris.localPath) else {
            return await remote.send(out, as: principal)
        }
        // A subscription on another node is followed from here (Follows.swift), for a subscriber
        // that is here: a Subscribe naming no service or sink of this node is refused.
        guard takesNotifications(to: subscriber) else {
            return .faulted(.invalidBody("Subscribe names \(subscriber) as its subscriber, and this node has no such service"), replyingTo: m)
        }
        follows.begin(subscriber: subscriber, publisher: m.to, as: principal)
        let reply = await remote.send(out, as: principal)
        await established(reply, subscriber: subscriber, publisher: m.to)
        return reply
    }

    /// Notes the publisher's answer to a Subscribe or its renewal. A subscription made anew tells
    /// its subscriber of the gap; one whose publisher says the service is gone ends, and its
    /// subscriber is told so (a Drop), as it would have been had the Drop arrived.
    private func established(_ reply: Message, subscriber: String, publisher: String) async {
        if let fault = reply.fault {
            guard fault.subcode?.local == "UnknownService" else { return follows.refused(subscriber: subscriber, publisher: publisher) }
            guard follows.end(subscriber: subscriber, publisher: publisher) != nil else { return }
            var dropped = Message(.drop, to: uris.authority + subscriber, kind: .notification)
            dropped.from = publisher
            _ = await hand(dropped, to: subscriber)
        } else if let id = reply.body?.child("Subscription").flatMap({ UInt64($0.text.trimmingXMLSpace()) }),
                  follows.established(subscriber: subscriber, publisher: publisher, id: id) {
            // The subscription was lost and made anew: what it would have told is missed.
            _ = await hand(.gap(to: uris.authority + subscriber, publisher: publisher), to: subscriber)
        }
    }

    /// Renews the subscriptions held on other nodes (on `node`'s services alone, if named): each
    /// Subscribe again, as it was first sent. One whose publisher lost it is made anew, and its
    /// subscriber told of the gap. A subscription ended meanwhile is not renewed.
    public func renewFollows(on node: String? = nil) {
        guard let remote else { return }
        for f in node.map(follows.on(node:)) ?? follows.all {
            Task {
                guard follows.holds(subscriber: f.subscriber, publisher: f.publisher),
                      security.authorize(f.principal, .subscribe, path: f.publisher) == nil else { return }
                var m = Message(.subscribe, to: f.publisher)
                m.from = uris.authority + f.subscriber
                await established(await remote.send(m, as: f.principal), subscriber: f.subscriber, publisher: f.publisher)
            }
        }
    }

    /// Ends the subscriptions held on `node`, which left the cluster: each subscriber is told, as
    /// by the publisher's own Drop.
    public func endFollows(on node: String) async {
        for f in follows.on(node: node) where follows.end(subscriber: f.subscriber, publisher: f.publisher) != nil {
            var dropped = Message(.drop, to: uris.authority + f.subscriber, kind: .notification)
            dropped.from = f.publisher
            _ = await hand(dropped, to: f.subscriber)
        }
    }

    /// Ends the remote subscriptions to this node's services whose lease ran out: their
    /// subscribers' nodes stopped renewing them (gone, or no longer interested).
    public func expireLeases() {
        let now = Subscription.clock()
        for r in uris.registrations {
            for s in r.removeLapsed(at: now) {
                s.queue.finish()
                logger.info("ended \(s.subscriberPath ?? "?")'s subscription to \(r.uri): not renewed within \(Subscription.lease / 1000) s")
            }
        }
    }

    /// Ends the subscriptions held by services of a node that died or left.
    public func dropSubscriptions(ofNode node: String) {
        let prefix = "decos://\(node)/"
        dropSubscriptions { $0.hasPrefix(prefix) }
    }

    /// Ends the subscriptions held by one remote subscriber (it no longer exists).
    public func dropSubscriptions(heldBy uri: String) {
        dropSubscriptions { $0 == uri }
    }

    private func dropSubscriptions(where held: (String) -> Bool) {
        for r in uris.registrations {
            for s in r.removeSubscriptions(where: held) { s.queue.finish() }
        }
    }

    /// Who subscribes to the service at `path`: local paths and remote URIs (streams are not listed).
    public func subscribers(of path: String) -> [String] {
        uris.lookup(path)?.subscriptions.withLock { $0.compactMap(\.subscriberPath) } ?? []
    }

    /// Delivers a notification from `node`; false if nothing here subscribed to it there (its
    /// subscriber is gone, or never asked), so the sender can end the subscription. Notifications
    /// missed before it are told first, as a gap.
    public func deliver(remoteNotification m: Message, from node: String) async -> Bool {
        guard let path = uris.localPath(m.to) else { return false }
        guard case .taken(let gap) = follows.arrival(of: m, to: path, from: node) else {
            logger.debug("refused a notification from \(node) to \(m.to): nothing here subscribed to \(m.from ?? "?") there")
            return false
        }
        if gap, !(await hand(.gap(to: m.to, publisher: m.from ?? ""), to: path)) {
            follows.end(subscriber: path)
            return false
        }
        guard await hand(m, to: path) else {
            // Its subscriber is gone: nothing renews it any more.
            follows.end(subscriber: path)
            return false
        }
        return true
    }

    /// Whether a notification from `node` would be taken here: asked before its buffers are fetched.
    public func expectsNotification(_ m: Message, from node: String) -> Bool {
        guard let path = uris.localPath(m.to), let publisher = m.from, URIManager.host(of: publisher) == node else { return false }
        return follows.holds(subscriber: path, publisher: publisher)
    }

    /// Hands a notification to the local service or sink at `path`; false if there is none.
    func hand(_ m: Message, to path: String) async -> Bool {
        if let sink = sinks.withLock({ $0[path] }) {
            // A full sink (its consumer 10,000 behind) ends, as a local subscriber's queue does.
            // A Drop is the publisher's last word: it is gone.
            if case .dropped = sink.yield(m) { sink.finish() } else if m.verb == .drop { sink.finish() }
            return true
        }
        guard let target = uris.lookup(path) else { return false }
        await target.service.notify(m)
        return true
    }

    /// Whether a notification to `uri` has anyone here to take it: a service, or a sink of
    /// `subscribe(anywhere:as:)`.
    public func takesNotifications(to uri: String) -> Bool {
        guard let path = uris.localPath(uri) else { return false }
        return uris.lookup(path) != nil || sinks.withLock { $0[path] != nil }
    }

    /// The cluster's directory: this node's services, then every other node's.
    public var clusterEntries: [DirectoryEntry] {
        uris.entries + (remote?.remoteEntries ?? [])
    }

    /// Waits until the cluster's directory, as this node sees it, satisfies `holds` — looked at
    /// now and again at each change `/directory` announces, never on a timer — and throws a
    /// `Timeout` fault if it has not after `limit`. For "wait until the service I call is there".
    public func awaitDirectory(within limit: Duration, until holds: @escaping @Sendable ([DirectoryEntry]) -> Bool) async throws(Fault) {
        // Subscribed before the first look, so no change between the two goes unseen.
        let changes = try subscribe("/directory", as: .system)
        if holds(clusterEntries) { return }
        let held = await withTaskGroup(of: Bool.self) { group in
            group.addTask { [self] in
                for await _ in changes where holds(clusterEntries) { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: limit)  // the deadline
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard held else { throw .timeout("the directory did not come to hold what was awaited within \(limit)") }
    }
}
