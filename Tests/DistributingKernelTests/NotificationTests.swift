import Decos
@testable import DistributingKernel
import Infoset
@testable import ServiceKernel
import Testing

/// Notifications reach every subscriber, whole and in order, and a subscriber that cannot keep
/// up is dropped rather than allowed to grow the publisher's memory.
@Suite(.serialized) struct NotificationTests {
    @Test func aRemoteSubscriberGetsANotificationsBuffers() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        var sub = Message(.subscribe, to: "decos://b/sink")
        sub.from = "/log"
        _ = try await a.kernel.send(sub, as: .system).result()
        // An Update with a buffer changes the sink's state: its subscribers are told, buffer and all.
        let bytes = (0..<(3 << 20)).map(pattern)
        _ = try await b.kernel.call(.update, "/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(bytes))])
        let log = try #require(a.kernel.uris.lookup("/log")?.service as? Log)
        // It used to be encoded with no buffers at all, so the receiver could not decode it: lost.
        try await waitUntil { await log.seen().count == 1 }
        let note = try #require(await log.seen().first)
        #expect(note.buffer("blob")?.bytes == bytes)
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
