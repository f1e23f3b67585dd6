import Infoset
@testable import ServiceKernel
import Synchronization
import Testing
import TestKit

/// Stands for the distributing kernel: notifications to other nodes are only counted here.
final class NoNetwork: RemoteDispatcher, Sendable {
    func send(_ m: Message, as principal: Principal) async -> Message { .faulted(.unreachable("no network in this test"), replyingTo: m) }
    func notify(_ m: Message) { sent.withLock { $0.append(m) } }
    var remoteEntries: [DirectoryEntry] { [] }
    /// Notifications handed to the network, in order.
    let sent = Mutex<[Message]>([])
}

/// A subscription from another node is one per subscriber however often it is asked for, and a
/// lease: it ends when its subscriber's node stops renewing it, even if nothing is ever published.
@Suite(.bounded) struct SubscriptionLeaseTests {
    @Test func aRemoteSubscriberHoldsOneSubscriptionAndItLapsesWithoutRenewal() async throws {
        let k = try await makeKernel()
        k.remote = NoNetwork()
        var subscribe = Message(.subscribe, to: "/counter")
        subscribe.from = "decos://other/log"
        let first = try #require(try await k.send(subscribe, as: .system).result()?.child("Subscription")?.text)
        // Asked again (a renewal, or the subscriber's node after a false death): the same one.
        let again = try #require(try await k.send(subscribe, as: .system).result()?.child("Subscription")?.text)
        #expect(again == first)
        #expect(k.subscribers(of: "/counter") == ["decos://other/log"])
        let reg = try #require(k.uris.lookup("/counter"))
        // Within its lease it stays; past it, unrenewed, it goes.
        #expect(reg.removeLapsed(at: Subscription.clock() + Subscription.lease / 2).isEmpty)
        #expect(reg.removeLapsed(at: Subscription.clock() + Subscription.lease + 1).map(\.id) == [UInt64(first)])
        #expect(k.subscribers(of: "/counter").isEmpty)
    }

    @Test func notificationsToAnotherNodeAreNumberedPerSubscription() async throws {
        let k = try await makeKernel()
        let network = NoNetwork()
        k.remote = network
        var subscribe = Message(.subscribe, to: "/counter")
        subscribe.from = "decos://other/log"
        _ = try await k.send(subscribe, as: .system).result()
        for _ in 0..<3 { _ = try await k.call(.update, "/counter", body: try XMLReader.parse("<Increment><By>1</By></Increment>")) }
        // Notifications leave through a task of their own: wait for them, with a bound.
        for _ in 0..<2_000 where network.sent.withLock({ $0.count }) < 3 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(network.sent.withLock { $0.map(\.sequence) } == [1, 2, 3])
        #expect(network.sent.withLock { $0.map(\.to) } == Array(repeating: "decos://other/log", count: 3))
    }

    @Test func aNotificationIsTakenOnlyFromTheNodeSubscribedToAndAGapIsToldAsOne() {
        let follows = Follows()
        follows.begin(subscriber: "/log", publisher: "decos://a/counter", as: .system)
        func note(_ seq: UInt64, from publisher: String = "decos://a/counter") -> Message {
            var m = Message(.update, to: "decos://b/log", kind: .notification)
            m.from = publisher
            m.sequence = seq
            return m
        }
        #expect(follows.arrival(of: note(1), to: "/log", from: "a") == .taken(gap: false))
        #expect(follows.arrival(of: note(2), to: "/log", from: "a") == .taken(gap: false))
        #expect(follows.arrival(of: note(4), to: "/log", from: "a") == .taken(gap: true))
        // Another member claiming to be a's counter, or another service of a: not taken.
        #expect(follows.arrival(of: note(5), to: "/log", from: "mallory") == .unknown)
        #expect(follows.arrival(of: note(5, from: "decos://a/kv"), to: "/log", from: "a") == .unknown)
        // The subscription made anew after it was lost: counted afresh, and the loss is reported.
        #expect(!follows.established(subscriber: "/log", publisher: "decos://a/counter", id: 7))
        #expect(follows.established(subscriber: "/log", publisher: "decos://a/counter", id: 9))
        #expect(follows.arrival(of: note(1), to: "/log", from: "a") == .taken(gap: false))
    }

    @Test func aGapIsStillAGapAfterTheHTTPStream() throws {
        // What `decos ctl subscribe` reads: the gap as its envelope says it, read back.
        let gap = Message.gap(to: "/.stream/1", publisher: "decos://a/counter")
        #expect(gap.isGap)
        #expect(try SOAP.decode(SOAP.encode(gap)).isGap)
        #expect(!(try SOAP.decode(SOAP.encode(Message.response(to: gap, body: gap.body)))).isGap)
    }
}
