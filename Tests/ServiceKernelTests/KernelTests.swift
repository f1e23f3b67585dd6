import Infoset
import ServiceKernel
import StandardServices
import Synchronization
import Testing
import TestKit

/// A service whose handler fails in the ways real code does.
actor Flaky: Service {
    static let contract = "urn:test:flaky"
    struct Oops: Error {}
    var calls = 0
    init(config: ServiceConfig) {}
    func handle(_ request: Request) throws -> Element? {
        calls += 1
        switch request.body?.name.local {
        case "Throw": throw Oops()
        case "Fault": throw Fault(.sender, "Mine", "my own fault")
        default: return Element("Calls", text: String(calls))
        }
    }
}

/// Records notifications it receives, and buffers it is handed.
actor Recorder: Service {
    static let contract = "urn:test:recorder"
    var seen: [Message] = []
    var lastBuffer: DataBuffer?
    init(config: ServiceConfig) {}
    func handle(_ request: Request) throws -> Element? {
        lastBuffer = request.message.buffers.first?.buffer
        return nil
    }
    func notify(_ notification: Message) { seen.append(notification) }
    func count() -> Int { seen.count }
    func all() -> [Message] { seen }
    func buffer() -> DataBuffer? { lastBuffer }
}

func makeKernel(policy: SecurityPolicy? = nil, exposed: Bool = false) async throws -> Kernel {
    let k = Kernel(node: "n1", security: SecurityManager(policy: policy, exposed: exposed),
                   contracts: StandardContracts.all.merging(Contracts([Flaky.self, Recorder.self])))
    try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
    return k
}

func increment(_ n: Int) -> Element { Element("Increment", children: [.element(Element("By", text: String(n)))]) }

@Suite(.bounded) struct KernelTests {
    @Test func getAndUpdateReachTheService() async throws {
        let k = try await makeKernel()
        let state = try await k.call(.update, "/counter", body: increment(3))
        #expect(state?.child("Value")?.text == "3")
        let full = try await k.call(.get, "decos://n1/counter")
        #expect(full?.child("Value")?.text == "3")
    }

    @Test func everyFailureIsAFaultAndTheServiceKeepsServing() async throws {
        let k = try await makeKernel()
        try await k.create(ServiceConfig(contract: Flaky.contract, name: "/flaky"))
        await #expect(throws: Fault.unknownService("/nope")) { try await k.call(.get, "/nope") }
        let unreachable = await k.send(Message(.get, to: "decos://other/x"), as: .system)
        #expect(unreachable.fault?.subcode?.local == "Unreachable")
        let unsupported = await k.send(Message(.submit, to: "/counter"), as: .system)
        #expect(unsupported.fault?.subcode?.local == "ActionNotSupported")
        let wrongBody = await k.send(Message(.update, to: "/counter", body: Element("Decrement")), as: .system)
        #expect(wrongBody.fault?.subcode?.local == "InvalidBody")
        #expect(wrongBody.fault?.reason.contains("<Increment>") == true)
        let thrown = await k.send(Message(.submit, to: "/flaky", body: Element("Throw")), as: .system)
        #expect(thrown.fault?.code == .receiver)
        #expect(thrown.fault?.reason.contains("Oops") == true)
        let own = await k.send(Message(.submit, to: "/flaky", body: Element("Fault")), as: .system)
        #expect(own.fault?.subcode?.local == "Mine")
        #expect(try await k.call(.submit, "/flaky")?.text == "3")
    }

    @Test func repliesRelateToTheRequest() async throws {
        let k = try await makeKernel()
        var m = Message(.get, to: "/counter")
        m.messageID = "urn:uuid:42"
        #expect(await k.send(m, as: .system).relatesTo == "urn:uuid:42")
        m.to = "/missing"
        #expect(await k.send(m, as: .system).relatesTo == "urn:uuid:42")
    }

    @Test func lookupDescribesAService() async throws {
        let k = try await makeKernel()
        try await k.create(ServiceConfig(contract: Recorder.contract, name: "/rec", partners: ["counter": "/counter"]))
        let info = try #require(try await k.call(.lookup, "/rec"))
        #expect(info.child("Uri")?.text == "decos://n1/rec")
        #expect(info.child("Contract")?.text == Recorder.contract)
        #expect(info.child("Partner")?.child("Uri")?.text == "/counter")
    }

    @Test func takenOrMissingNamesAreGeneratedUnique() async throws {
        let k = try await makeKernel()
        let a = try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
        let b = try await k.create(ServiceConfig(contract: Counter.contract))
        let c = try await k.create(ServiceConfig(contract: Counter.contract))
        #expect(a.path == "/counter-2")
        #expect(b.path == "/counter-2" || b.path == "/counter-3" || b.path.hasPrefix("/counter"))
        #expect(Set([a.path, b.path, c.path, "/counter"]).count == 4)
        #expect(c.uri == "decos://n1" + c.path)
    }

    @Test func localBuffersPassByReference() async throws {
        let k = try await makeKernel()
        try await k.create(ServiceConfig(contract: Recorder.contract, name: "/rec"))
        let buffer = DataBuffer(Array(repeating: 7, count: 1 << 20))
        _ = try await k.call(.submit, "/rec", buffers: [BufferRef(id: "big", buffer: buffer)])
        let received = try #require(await (k.uris.lookup("/rec")!.service as! Recorder).buffer())
        #expect(received === buffer)
    }

    @Test func subscribersGetStateChangesInOrder() async throws {
        let k = try await makeKernel()
        let rec = try await k.create(ServiceConfig(contract: Recorder.contract, name: "/rec"))
        var sub = Message(.subscribe, to: "/counter")
        sub.from = "/rec"
        #expect(try await k.send(sub, as: .system).result()?.child("Publisher")?.text == "decos://n1/counter")
        for i in 1...20 { _ = try await k.call(.update, "/counter", body: increment(i)) }
        _ = try await k.call(.get, "/counter")  // reads are not notifications
        let recorder = rec.service as! Recorder
        try await until("the condition awaited here") { await recorder.count() == 20 }
        let seen = await recorder.all()
        #expect(seen.map { $0.body?.child("By")?.text } == (1...20).map { String($0) })
        #expect(seen.allSatisfy { $0.kind == .notification && $0.verb == .update && $0.from == "decos://n1/counter" })
    }

    @Test func subscriptionsEndWhenEitherSideDrops() async throws {
        let k = try await makeKernel()
        let stream = try k.subscribe("/counter", as: .system)
        _ = try await k.call(.update, "/counter", body: increment(1))
        try await k.drop("/counter")
        var verbs: [Verb] = []
        for await n in stream { verbs.append(n.verb) }
        #expect(verbs == [.update, .drop])

        // The subscriber side: a dropped subscriber's subscription is removed.
        try await k.create(ServiceConfig(contract: Counter.contract, name: "/c2"))
        try await k.create(ServiceConfig(contract: Recorder.contract, name: "/rec"))
        var sub = Message(.subscribe, to: "/c2")
        sub.from = "/rec"
        _ = try await k.send(sub, as: .system).result()
        try await k.drop("/rec")
        _ = try await k.call(.update, "/c2", body: increment(1))  // nobody left to tell; must not fail
        #expect(try await k.call(.get, "/c2")?.child("Value")?.text == "1")
    }

    @Test func subscribeNeedsALocalSubscriber() async throws {
        let k = try await makeKernel()
        let f = await k.send(Message(.subscribe, to: "/counter"), as: .system).fault
        #expect(f?.subcode?.local == "InvalidBody")
    }

    @Test func dropSentToAServiceDropsIt() async throws {
        let k = try await makeKernel()
        _ = try await k.call(.drop, "/counter")
        #expect(k.uris.lookup("/counter") == nil)
    }

    @Test func unknownContractIsAClearFault() async throws {
        let k = try await makeKernel()
        await #expect(throws: Fault.self) { try await k.create(ServiceConfig(contract: "urn:nope")) }
    }
}
