import Decos
@testable import DistributingKernel
import Infoset
@testable import ServiceKernel
import Testing
import TestKit

/// Notifications reach every subscriber, whole and in order, and a subscriber that cannot keep
/// up is dropped rather than allowed to grow the publisher's memory.
@Suite(.bounded, .serialized) struct NotificationTests {
    @Test func aRemoteSubscriberGetsANotificationsBuffers() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        var sub = Message(.subscribe, to: "decos://b/sink")
        sub.from = "/log"
        _ = try await a.kernel.send(sub, as: .system).result()
        // An Update with a buffer changes the sink's state: its subscribers are told, buffer and all.
        let bytes = TestPattern.bytes(3 << 20)
        _ = try await b.kernel.call(.update, "/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(bytes))])
        let log = try #require(a.kernel.uris.lookup("/log")?.service as? Log)
        // It used to be encoded with no buffers at all, so the receiver could not decode it: lost.
        try await until("the condition awaited here") { await log.seen().count == 1 }
        let note = try #require(await log.seen().first)
        #expect(note.buffer("blob")?.bytes == bytes)
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func anInProcessConsumerFollowsAnotherNodesServiceUntilItStops() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        // What the gateway does for a browser watching node b's counter through node a: a consumer
        // that takes the first notification and stops.
        let consumer = Task { () async throws -> Message? in
            for await n in try await a.kernel.subscribe(anywhere: "decos://b/counter", as: .system) { return n }
            return nil
        }
        try await until("the condition awaited here") { b.kernel.subscribers(of: "/counter").count == 1 }
        let inc = try XMLReader.parse("<Increment><By>3</By></Increment>")
        _ = try await b.kernel.call(.update, "/counter", body: inc)
        let first = try await consumer.value
        #expect(first?.verb == .update && first?.body?.child("By")?.text == "3")
        // It stopped: its sink is gone, the next change finds none at a, and b drops the subscription.
        try await until("the condition awaited here") { a.kernel.sinks.withLock { $0.isEmpty } }
        _ = try await b.kernel.call(.update, "/counter", body: inc)
        try await until("the condition awaited here") { b.kernel.subscribers(of: "/counter").isEmpty }
        // A service that does not exist there is a fault, not a silent stream.
        await #expect(throws: Fault.self) { _ = try await a.kernel.subscribe(anywhere: "decos://b/nothing", as: .system) }
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func theClusterServiceListsMembersAndTellsOfEachChange() async throws {
        let a = try await bootNode("a")
        let changes = try a.kernel.subscribe("/os/cluster", as: .system)
        let b = try await bootNode("b", seed: address(a))
        var notes = changes.makeAsyncIterator()
        let joined = await notes.next()
        #expect(joined?.verb == .update && joined?.body?.child("Name")?.text == "b" && joined?.body?.child("Status")?.text == "alive")
        let view = try #require(try await a.kernel.call(.get, "/os/cluster"))
        #expect(view.elements.filter { $0.name.local == "Member" }.map { [$0.child("Name")?.text, $0.child("Status")?.text] } == [["a", "alive"], ["b", "alive"]])
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aSubscriberThatFallsTooFarBehindIsDropped() async throws {
        let a = try await bootNode("a")
        // A consumer that never reads its stream.
        let stream = try a.kernel.subscribe("/counter", as: .system)
        let registration = try #require(a.kernel.uris.lookup("/counter"))
        #expect(registration.subscriptions.withLock { $0.count } == 1)
        let inc = try XMLReader.parse("<Increment><By>1</By></Increment>")
        for _ in 0...Subscription.maxBacklog { _ = try await a.kernel.call(.update, "/counter", body: inc) }
        #expect(registration.subscriptions.withLock { $0.count } == 0)
        // What it held is still there to read, then the stream ends.
        var held = 0
        for await _ in stream { held += 1 }
        #expect(held == Subscription.maxBacklog)
        await a.network?.stop()
    }

    @Test func notificationsLeaveInTheOrderTheChangesWereMade() async throws {
        let a = try await bootNode("a")
        let stream = try a.kernel.subscribe("/kv", as: .system)
        // Many writers at once: the last notification must carry the value the store kept.
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let entry = try! XMLReader.parse("<Entry><Key>k</Key><Value>\(i)</Value></Entry>")
                    _ = await a.kernel.send(Message(.upsert, to: "/kv", body: entry), as: .system)
                }
            }
        }
        var last: String?
        var seen = 0
        for await n in stream {
            last = n.body?.child("Value")?.text
            seen += 1
            if seen == 200 { break }
        }
        let kept = try await a.kernel.call(.get, "/kv")
        let stored = kept?.elements.first { $0.child("Key")?.text == "k" }?.child("Value")?.text
        #expect(last == stored)
        await a.network?.stop()
    }
}

/// Subscriptions across nodes outlive what the cluster outlives: a false death, a restart.
@Suite(.bounded, .serialized) struct SubscriptionResumeTests {
    @Test func aSubscriptionResumesAfterAFalseDeathAndTellsOfTheGap() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/log")
        try await waitUntil(b, lists: "decos://a/counter")
        // b's log follows a's counter.
        var sub = Message(.subscribe, to: "decos://a/counter")
        sub.from = "/log"
        _ = try await b.kernel.send(sub, as: .system).result()
        let inc = try XMLReader.parse("<Increment><By>1</By></Increment>")
        let log = try #require(b.kernel.uris.lookup("/log")?.service as? Log)
        _ = try await a.kernel.call(.update, "/counter", body: inc)
        try await until("the condition awaited here") { await log.seen().count == 1 }
        // A rumour, sealed with the cluster's key, that b is dead: a believes it (here a takes a
        // death at its word even though it hears from b: as if b's messages had been lost) and
        // drops b's subscription; b hears of it, refutes, and is alive again.
        try await a.network!.withMembership { $0.membership.config.freshEvidence = 0 }
        let me = try #require(b.network?.members.first { $0.name == "b" })
        var dead = me
        dead.status = .dead
        let rumour = Membership.Member(name: "rumour", address: "127.0.0.1:9", incarnation: 1, status: .alive)
        send(datagram: MembershipDatagrams.datagram(Wire.encode(.gossip(members: [dead]), from: rumour), epoch: 1, sequence: 1, to: "a", key: clusterKey),
             toPort: a.clusterAddress!.port!)
        try await until("the condition awaited here") { a.kernel.subscribers(of: "/counter").isEmpty }
        try await until("the condition awaited here") { a.network?.members.first { $0.name == "b" }?.status == .alive && !a.kernel.subscribers(of: "/counter").isEmpty }
        // b was told what it missed may be lost; the next change reaches it again.
        try await until("the condition awaited here") { await log.seen().contains { $0.isGap } }
        _ = try await a.kernel.call(.update, "/counter", body: inc)
        try await until("the condition awaited here") { await log.seen().count == 3 }
        let seen = await log.seen()
        #expect(seen.map(\.isGap) == [false, true, false])
        #expect(seen.last?.verb == .update)
        // One subscription, not two: each change told once.
        #expect(a.kernel.subscribers(of: "/counter") == ["decos://b/log"])
        for n in [a, b] { await n.network?.stop() }
    }
}
