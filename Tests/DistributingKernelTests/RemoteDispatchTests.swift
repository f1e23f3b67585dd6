import Decos
@testable import DistributingKernel
import Infoset
import ServiceKernel
import Testing
import TestKit

/// Remote requests are handed to a service as local ones are: in the order their sender sent
/// them, but never behind a handler that is waiting.
@Suite(.bounded, .serialized) struct RemoteDispatchTests {
    @Test func aCrossNodeReentrantChainCompletes() async throws {
        // a → b → a → b → …: each hop's handler waits for the next. With a lane that waited for
        // each handler to finish, b's second request queued behind its first until the timeout.
        // (30 s per call: the six hops took over 10 s once, with the whole suite on two cores; a
        // lane that blocked would still wait out the timeout and fail.)
        let a = try await bootNode("a", requestTimeout: 30)
        let b = try await bootNode("b", seed: address(a), requestTimeout: 30)
        try await waitUntil(a, lists: "decos://b/counter")
        try await waitUntil(b, lists: "decos://a/counter")
        let body = Element("Bounce", children: [.element(Element("Left", text: "6")), .element(Element("Back", text: "decos://a/bouncer"))])
        let reply = try await a.kernel.call(.submit, "decos://b/bouncer", body: body)
        #expect(reply?.text == "6")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aReplysBuffersReachTheCallerOnItsOwnNodeAndOnAnother() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/echo")
        let blob = BufferRef(id: "blob", buffer: DataBuffer([1, 2, 3]))
        // On its own node the echo's reply carries the buffer back.
        let local = await b.kernel.send(Message(.submit, to: "/echo", buffers: [blob]), as: .system)
        #expect(local.buffers.first?.buffer.bytes == [1, 2, 3])
        // From another node the buffer goes there on the data plane and comes back the same way,
        // large enough to take many chunks.
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let remote = await a.kernel.send(Message(.submit, to: "decos://b/echo", buffers: [BufferRef(id: "big", buffer: DataBuffer(big))]), as: .system)
        #expect(remote.fault == nil, "\(remote.fault?.reason ?? "")")
        #expect(remote.buffers.map(\.id) == ["big"] && remote.buffers.first?.buffer.bytes == big)
        // Its bytes came on the data plane, not in the reply's frame.
        #expect(a.network!.dataTraffic.first { $0.node == "b" }?.bytesReceived ?? 0 >= UInt64(big.count))
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aSlowCallDoesNotHoldUpTheNextFromTheSameSender() async throws {
        // Every gateway client of a node is the same sender to the other node: one slow call
        // must not stall the rest.
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        let sent = a.network!.correlations.load(ordering: .relaxed)
        let slow = Task { try? await a.kernel.call(.submit, "decos://b/sleepy", body: Element("Nap", text: "slow")) }
        try await until("the condition awaited here") { a.network!.correlations.load(ordering: .relaxed) > sent }  // the slow one is on the wire first
        let quick = try await a.kernel.call(.submit, "decos://b/sleepy", body: Element("Nap", text: "quick"))
        #expect(quick?.name.local == "Awake")
        slow.cancel()
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func requestsFromOneSenderReachTheServiceInOrder() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        _ = try await a.kernel.call(.get, "decos://b/counter")  // the connection to b is open
        let outbox = try #require(a.network!.links.open(to: "b"))
        // Sent without waiting for replies: each is queued for the wire before the next is sent.
        var calls: [Task<Message, Never>] = []
        let first = outbox.posted(.request)
        for i in 0..<100 {
            var m = Message(.submit, to: "decos://b/log", body: Element("V", text: String(i)))
            m.from = "/counter"
            calls.append(Task { await a.kernel.send(m, as: .system) })
            try await until("the condition awaited here") { outbox.posted(.request) == first + i + 1 }
        }
        for c in calls { _ = await c.value }
        let log = try #require(b.kernel.uris.lookup("/log")?.service as? Log)
        #expect(await log.order() == (0..<100).map(String.init))
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func messagesTooLargeForAFrameAreRefusedWithTheLimitAndTheConnectionLivesOn() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        _ = try await a.kernel.call(.get, "decos://b/counter")
        let link = a.network!.links.open(to: "b")
        // A request over the limit: refused by the sender, naming the limit.
        do {
            _ = try await a.kernel.call(.submit, "decos://b/log", body: Element("Blob", text: String(repeating: "x", count: 17 << 20)))
            Issue.record("a 17 MiB request was sent")
        } catch {
            #expect(error.subcode?.local == "TooLarge")
            #expect(error.reason.contains("\(Wire.maxPayload)"))
        }
        // A reply over the limit: its caller gets a fault saying so, not a lost connection.
        do {
            _ = try await a.kernel.call(.submit, "decos://b/sleepy", body: Element("Nap", text: "huge"))
            Issue.record("a 17 MiB reply was sent")
        } catch {
            #expect(error.subcode?.local == "TooLarge")
        }
        // The same connection carries the next call.
        _ = try await a.kernel.call(.get, "decos://b/counter")
        #expect(a.network!.links.open(to: "b") === link)
        for n in [a, b] { await n.network?.stop() }
    }
}
