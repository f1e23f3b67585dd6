import Decos
@testable import DistributingKernel
import Foundation
import Infoset
import NIOPosix
import ServiceKernel
import StandardServices
import Synchronization
import Testing
import TestKit

/// Receives a remote buffer and checks it against the pattern the sender wrote.
actor Sink: Service {
    static let contract = "urn:test:sink"
    init(config: ServiceConfig) {}
    func handle(_ request: Request) throws -> Element? {
        guard let b = request.message.buffer("blob") else { throw Fault.invalidBody("no buffer") }
        let ok = b.withUnsafeBytes(TestPattern.holds)
        return Element("Received", children: [.element(Element("Bytes", text: String(b.count))), .element(Element("Intact", text: String(ok)))])
    }
}

/// Set once a call has returned.
final class Answered: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var value: Bool { flag.withLock { $0 } }
}

/// The bytes of a test buffer: each 4 KiB block is a window of a fixed template, starting at an
/// offset its number picks, with the number itself in its first 8 bytes, so a block lost, repeated
/// or out of place shows, and so does a piece shifted within blocks. Filled with memcpy and
/// checked with memcmp: a GiB made and checked byte by byte in a debug build held the test
/// process's pool threads for seconds, and the in-process nodes of other tests missed their
/// deadlines.
enum TestPattern {
    static let block = 4096
    /// Twice a block, so any window of a block's length fits.
    static let template: [UInt8] = (0..<2 * block).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }

    static func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { p, n in
            fill(UnsafeMutableRawBufferPointer(p))
            n = count
        }
    }

    /// Where block `k`'s window of the template starts.
    static func offset(_ k: Int) -> Int { (k &* 97) % block }

    static func fill(_ p: UnsafeMutableRawBufferPointer) {
        template.withUnsafeBytes { t in
            for (k, start) in stride(from: 0, to: p.count, by: block).enumerated() {
                let n = min(block, p.count - start)
                UnsafeMutableRawBufferPointer(rebasing: p[start..<start + n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: t[offset(k)..<offset(k) + n]))
                withUnsafeBytes(of: UInt64(k).littleEndian) { number in
                    UnsafeMutableRawBufferPointer(rebasing: p[start..<start + min(8, n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: number[..<min(8, n)]))
                }
            }
        }
    }

    static func holds(_ p: UnsafeRawBufferPointer) -> Bool {
        template.withUnsafeBytes { t in
            for (k, start) in stride(from: 0, to: p.count, by: block).enumerated() {
                let n = min(block, p.count - start), stamp = min(8, n)
                let numbered = withUnsafeBytes(of: UInt64(k).littleEndian) { number in
                    memcmp(p.baseAddress! + start, number.baseAddress!, stamp) == 0
                }
                guard numbered, memcmp(p.baseAddress! + start + stamp, t.baseAddress! + offset(k) + stamp, n - stamp) == 0 else { return false }
            }
            return true
        }
    }
}

/// Never answers: calls to it stay pending until the deadline or the peer's death.
actor Silent: Service {
    static let contract = "urn:test:silent"
    init(config: ServiceConfig) {}
    func handle(_ request: Request) async throws -> Element? {
        try await Task.sleep(for: .seconds(3600))
        return nil
    }
}

/// Remembers the notifications it gets and the order of the values it is sent.
actor Log: Service {
    static let contract = "urn:test:log"
    var notes: [Message] = []
    var values: [String] = []
    init(config: ServiceConfig) {}
    func handle(_ request: Request) throws -> Element? {
        values.append(request.body?.text ?? "")
        return nil
    }
    func notify(_ n: Message) { notes.append(n) }
    func seen() -> [Message] { notes }
    func order() -> [String] { values }
}

/// Bounces a call between nodes: Submit `<Bounce><Left>n</Left><Back>URI</Back></Bounce>` calls
/// Back with n − 1, naming itself as the way back, until n is 0. Node a's bouncer calling b's,
/// which calls a's, which calls b's… is a cross-node re-entrant chain.
actor Bouncer: Service {
    static let contract = "urn:test:bouncer"
    var context: ServiceContext?
    init(config: ServiceConfig) {}
    func start(_ context: ServiceContext) async throws { self.context = context }
    func handle(_ request: Request) async throws -> Element? {
        let left = Int(request.body?.child("Left")?.text ?? "") ?? 0
        guard left > 0, let back = request.body?.child("Back")?.text, let context else { return Element("Done", text: "0") }
        let body = Element("Bounce", children: [.element(Element("Left", text: String(left - 1))), .element(Element("Back", text: context.uri))])
        let reply = try await context.call(.submit, back, body: body)
        return Element("Done", text: String((Int(reply?.text ?? "") ?? 0) + 1))
    }
}

/// Answers at once, except a request whose body says "slow", which it never answers, one that
/// says "huge", answered with 17 MiB, and one that says "nap N", answered after N ms (the wait is
/// the behaviour under test: a call still running when something happens).
actor Sleepy: Service {
    static let contract = "urn:test:sleepy"
    init(config: ServiceConfig) {}
    func handle(_ request: Request) async throws -> Element? {
        // Never answered, and no timer involved: a stream that never yields (ended by cancellation).
        if request.body?.text == "slow" {
            for await _ in AsyncStream<Never>(Never.self, bufferingPolicy: .unbounded, { _ in }) {}
            try Task.checkCancellation()
        }
        if request.body?.text == "huge" { return Element("Big", text: String(repeating: "x", count: 17 << 20)) }
        if let text = request.body?.text, text.hasPrefix("nap "), let ms = Int(text.dropFirst(4)) { try await Task.sleep(for: .milliseconds(ms)) }
        // Held until the test opens the gate of that name.
        if let text = request.body?.text, text.hasPrefix("gate ") { await Gates.wait(String(text.dropFirst(5))) }
        return Element("Awake")
    }
}

let keyPath: String = {
    let p = NSTemporaryDirectory() + "decos-test-\(getpid()).key"
    try! "test-cluster-key-0123456789abcdef".write(toFile: p, atomically: true, encoding: .utf8)
    return p
}()

func bootNode(_ name: String, seed: String? = nil, key: String = keyPath, requestTimeout: Int = 10, dataLinkIdle: Int = 30,
              exposed: Bool = false, encryption: Bool = true, memory: String = "", dataPlanes: String = "rdma xdp tcp") async throws -> Node {
    let m = try Manifest.parse("""
    <Manifest xmlns="urn:decos:manifest" node="\(name)">
      \(memory)
      <Network>\(exposed ? #"<Gateway listen="0.0.0.0:0"/>"# : "")<Cluster listen="127.0.0.1:0" keyFile="\(key)" probeInterval="200" probeTimeout="100" suspicionTimeout="800" requestTimeout="\(requestTimeout)" dataLinkIdle="\(dataLinkIdle)" encryption="\(encryption ? "on" : "off")">
        \(seed.map { "<Seed address=\"\($0)\"/>" } ?? "")
      </Cluster><DataPlane prefer="\(dataPlanes)"/></Network>
      <Service contract="urn:decos:examples:counter" name="/counter"/>
      <Service contract="urn:test:sink" name="/sink"/>
      <Service contract="urn:test:silent" name="/silent"/>
      <Service contract="urn:test:log" name="/log"/>
      <Service contract="urn:decos:examples:kv" name="/kv"/>
      <Service contract="urn:test:bouncer" name="/bouncer"/>
      <Service contract="urn:test:sleepy" name="/sleepy"/>
      <Service contract="urn:decos:examples:echo" name="/echo"/>
    </Manifest>
    """)
    return try await Node.boot(m, extra: Contracts([Sink.self, Silent.self, Log.self, Bouncer.self, Sleepy.self]))
}

func address(_ n: Node) -> String { "127.0.0.1:\(n.clusterAddress!.port!)" }

/// Waits until `node`'s cluster directory satisfies `holds`, woken by the directory's own change
/// notifications (`Kernel.awaitDirectory`); the test fails here if it does not within a minute.
func waitUntil(_ node: Node, sourceLocation: Testing.SourceLocation = #_sourceLocation,
               _ holds: @escaping @Sendable ([DirectoryEntry]) -> Bool) async throws {
    do { try await node.kernel.awaitDirectory(within: .seconds(60), until: holds) } catch {
        Issue.record("\(node.kernel.node): \(error.reason)", sourceLocation: sourceLocation)
        throw error
    }
}

/// Waits until `node` lists every one of `uris`.
func waitUntil(_ node: Node, lists uris: String..., sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
    try await waitUntil(node, sourceLocation: sourceLocation) { [uris] entries in Set(uris).isSubset(of: entries.map(\.uri)) }
}

/// Waits until `node` lists none of `uris`.
func waitUntil(_ node: Node, drops uris: String..., sourceLocation: Testing.SourceLocation = #_sourceLocation) async throws {
    try await waitUntil(node, sourceLocation: sourceLocation) { [uris] entries in Set(uris).isDisjoint(with: entries.map(\.uri)) }
}

/// Sends gossip that `member` is as it says, as one UDP datagram from it to a node's cluster port.
func announce(_ member: Membership.Member, toPort port: Int, to node: String = "a", key: ClusterKey = clusterKey, sequence: UInt64 = 1) {
    send(datagram: MembershipDatagrams.datagram(Wire.encode(.gossip(members: [member]), from: member), epoch: member.epoch, sequence: sequence, to: node, key: key),
         toPort: port)
}

/// One UDP datagram to a node's cluster port on loopback.
func send(datagram: [UInt8], toPort port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var to = sockaddr_in()
    to.sin_family = sa_family_t(AF_INET)
    to.sin_port = in_port_t(UInt16(port).bigEndian)
    to.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &to) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, datagram, datagram.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    close(fd)
}

/// The test cluster's key, as the nodes read it.
var clusterKey: ClusterKey {
    let text = (try? String(contentsOfFile: keyPath, encoding: .utf8)) ?? ""
    return ClusterKey(file: Array(text.utf8))!
}

func paths(_ n: Node, contract: String = "urn:decos:examples:counter") -> Set<String> {
    Set(n.kernel.clusterEntries.filter { $0.contract == contract }.map(\.uri))
}

@Suite(.bounded, .serialized) struct ClusterTests {
    @Test func threeNodesShareOneNamespace() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        let c = try await bootNode("c", seed: address(a))
        let all: Set = ["decos://a/counter", "decos://b/counter", "decos://c/counter"]
        for n in [a, b, c] { try await waitUntil(n) { Set($0.filter { $0.contract == Counter.contract }.map(\.uri)) == all } }
        // A service created later spreads too, and so does its removal.
        try await c.kernel.create(ServiceConfig(contract: Counter.contract, name: "/late"))
        try await waitUntil(a, lists: "decos://c/late")
        try await c.kernel.drop("/late")
        try await waitUntil(a, drops: "decos://c/late")
        for n in [a, b, c] { await n.network?.stop() }
    }

    @Test func remoteVerbsAndFaults() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        let inc = try XMLReader.parse("<Increment><By>5</By></Increment>")
        #expect(try await a.kernel.call(.update, "decos://b/counter", body: inc)?.child("Value")?.text == "5")
        #expect(try await b.kernel.call(.get, "/counter")?.child("Value")?.text == "5")
        let missing = await a.kernel.send(Message(.get, to: "decos://b/nothing"), as: .system)
        #expect(missing.fault?.subcode?.local == "UnknownService")
        let unknownNode = await a.kernel.send(Message(.get, to: "decos://zz/counter"), as: .system)
        #expect(unknownNode.fault?.subcode?.local == "Unreachable")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aNodeAppliesItsOwnPolicyBeforeForwarding() async throws {
        // a's gateway is exposed without rules: its anonymous clients may only read, and reaching
        // through a to b (which trusts a as node:a) must not give them more.
        let a = try await bootNode("a", exposed: true)
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        let inc = try XMLReader.parse("<Increment><By>5</By></Increment>")
        let write = await a.kernel.send(Message(.update, to: "decos://b/counter", body: inc), as: .anonymous)
        #expect(write.fault?.subcode?.local == "Denied")
        let read = await a.kernel.send(Message(.get, to: "decos://b/counter"), as: .anonymous)
        #expect(read.fault == nil)
        #expect(try await b.kernel.call(.get, "/counter")?.child("Value")?.text == "0")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func orderIsKeptFromOneSenderToOneService() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        // A remote subscription: the counter on b notifies the log on a of 200 changes, which leave
        // without waiting for each other.
        var sub = Message(.subscribe, to: "decos://b/counter")
        sub.from = "/log"
        _ = try await a.kernel.send(sub, as: .system).result()
        for i in 1...200 { _ = try await b.kernel.call(.update, "/counter", body: XMLReader.parse("<Increment><By>\(i)</By></Increment>")) }
        let log = a.kernel.uris.lookup("/log")!.service as! Log
        try await until("the condition awaited here") { await log.seen().count == 200 }
        #expect(await log.seen().map { $0.body?.child("By")?.text } == (1...200).map { String($0) })
        #expect(await log.seen().allSatisfy { $0.from == "decos://b/counter" && $0.kind == .notification })
        #expect(b.kernel.subscribers(of: "/counter") == ["decos://a/log"])
        // The subscription ends when its subscriber is dropped: the next notification finds it gone.
        try await a.kernel.drop("/log")
        _ = try await b.kernel.call(.update, "/counter", body: XMLReader.parse("<Increment><By>1</By></Increment>"))
        try await until("the condition awaited here") { b.kernel.subscribers(of: "/counter").isEmpty }
        try await a.kernel.create(ServiceConfig(contract: Log.contract, name: "/log"))
        // Requests from one sender, each sent after the last was answered, arrive in order too.
        for i in 0..<50 {
            var m = Message(.submit, to: "decos://b/log", body: Element("V", text: String(i)))
            m.from = "/counter"
            _ = await a.kernel.send(m, as: .system)
        }
        let remoteLog = b.kernel.uris.lookup("/log")!.service as! Log
        #expect(await remoteLog.order() == (0..<50).map { String($0) })
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func directorySubscribersSeeOtherNodesChanges() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        let changes = try a.kernel.subscribe("/directory", as: .system)
        try await b.kernel.create(ServiceConfig(contract: Echo.contract, name: "/e"))
        for await n in changes where n.body?.child("Uri")?.text == "decos://b/e" {
            #expect(n.verb == .insert)
            break
        }
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aBufferArrivesIntactWithoutRidingInTheMessage() async throws {
        // Generous deadlines on both sides: checking a GiB byte by byte in a debug build on a
        // busy machine takes longer than a call's usual 10 s.
        let a = try await bootNode("a", requestTimeout: 600)
        let b = try await bootNode("b", seed: address(a), requestTimeout: 600)
        try await waitUntil(a, lists: "decos://b/sink")
        let size = (ProcessInfo.processInfo.environment["DECOS_BUFFER_MIB"].flatMap(Int.init) ?? 1024) << 20
        let bytes = TestPattern.bytes(size)
        let reply = try await a.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(bytes))])
        #expect(reply?.child("Bytes")?.text == String(size))
        #expect(reply?.child("Intact")?.text == "true")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func buffersFromTwoSendersAtOnceAreNotMixedUp() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        let c = try await bootNode("c", seed: address(a))
        try await waitUntil(a, lists: "decos://b/sink")
        try await waitUntil(c, lists: "decos://b/sink")
        func blob(_ size: Int) -> DataBuffer {
            DataBuffer(TestPattern.bytes(size))
        }
        // Each is its sender's first export, so both carry the same transfer number.
        async let fromA = a.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: blob(8 << 20))])
        async let fromC = c.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: blob(12 << 20))])
        let (ra, rc) = try await (fromA, fromC)
        #expect(ra?.child("Bytes")?.text == String(8 << 20) && ra?.child("Intact")?.text == "true")
        #expect(rc?.child("Bytes")?.text == String(12 << 20) && rc?.child("Intact")?.text == "true")
        for n in [a, b, c] { await n.network?.stop() }
    }

    @Test func anIdleDataLinkIsClosedAndTheNextBufferOpensAnother() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a), dataLinkIdle: 1)
        try await waitUntil(a, lists: "decos://b/sink")
        let blob = DataBuffer(TestPattern.bytes(1 << 20))
        func send() async throws -> Element? {
            try await a.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: blob)])
        }
        #expect(try await send()?.child("Intact")?.text == "true")
        #expect(b.network?.openDataLinks == ["a"])  // b pulled the buffer from a
        // No buffer moves for a second: the link and its thread go.
        try await until("the condition awaited here") { b.network?.openDataLinks.isEmpty == true }
        #expect(try await send()?.child("Intact")?.text == "true")
        #expect(b.network?.openDataLinks == ["a"])
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func dataPlaneTrafficIsShownPerPeerAtOsDataplane() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/sink")
        // Two buffers in one message, pulled side by side on the one link.
        let reply = try await a.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(TestPattern.bytes(3 << 20))),
                                                                            BufferRef(id: "more", buffer: DataBuffer([UInt8](repeating: 7, count: 1 << 20)))])
        #expect(reply?.child("Intact")?.text == "true")
        func peer(_ node: Node, _ name: String) async throws -> Element? {
            try await node.kernel.call(.get, "/os/dataplane")?.elements.first { $0.name.local == "Peer" && $0.child("Node")?.text == name }
        }
        let atB = try #require(try await peer(b, "a"))
        #expect(atB.child("Plane")?.text == "tcp")
        #expect(atB.child("BytesReceived")?.text == String(4 << 20))
        #expect(atB.child("Received")?.text == "2")
        #expect(atB.child("Receiving")?.text == "0" && atB.child("Failed")?.text == "0")
        let choice = try await b.kernel.call(.get, "/os/dataplane")?.elements.first { $0.name.local == "Choice" && $0.child("Node")?.text == "a" }
        #expect(choice?.child("Offers")?.text == "tcp" && choice?.child("Chosen")?.text == "tcp")
        // The sender counts a chunk once it is written; the offers went when the call ended.
        try await until("the condition awaited here") { (try? await peer(a, "b"))??.child("BytesSent")?.text == String(4 << 20) }
        #expect(try await peer(a, "b")?.child("Offered")?.text == "0")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aBufferLargerThanThePoolCanHoldFaultsNamingTheLimitAndTheNodeGoesOn() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a), memory: #"<Memory buffers="8MiB"/>"#)
        try await waitUntil(a, lists: "decos://b/sink")
        func send(_ n: Int) async -> Message {
            await a.kernel.send(Message(.submit, to: "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(TestPattern.bytes(n)))]), as: .system)
        }
        let refused = await send(12 << 20)
        #expect(refused.fault?.subcode?.local == "ResourceExhausted")
        #expect(refused.fault?.reason.contains("8388608") == true, "\(refused.fault?.reason ?? "no fault")")
        // Nothing was held back: one that fits arrives whole, and b's pool is empty after it.
        #expect(try await send(6 << 20).result()?.child("Intact")?.text == "true")
        try await until("the condition awaited here") { b.kernel.pool.usage.inUse == 0 }
        let memory = try await b.kernel.call(.get, "/os/memory")
        #expect(memory?.elements.first?.child("Limit")?.text == String(8 << 20))
        #expect(memory?.elements.first?.child("Refused")?.text == "1")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func nodesWithNoDataPlaneInCommonFaultBuffersSayingWhyAndStillCall() async throws {
        let a = try await bootNode("a", dataPlanes: "tcp")
        let b = try await bootNode("b", seed: address(a), dataPlanes: "rdma")  // no RDMA here: b takes buffers on nothing
        try await waitUntil(a, lists: "decos://b/sink")
        try await waitUntil(b, lists: "decos://a/sink")
        let blob = [BufferRef(id: "blob", buffer: DataBuffer(TestPattern.bytes(4096)))]
        let toB = await a.kernel.send(Message(.submit, to: "decos://b/sink", buffers: blob), as: .system)
        #expect(toB.fault?.reason.contains("no data plane in common with node b") == true, "\(toB.fault?.reason ?? "no fault")")
        #expect(toB.fault?.reason.contains("this node offers tcp") == true)
        let toA = await b.kernel.send(Message(.submit, to: "decos://a/sink", buffers: blob), as: .system)
        #expect(toA.fault?.reason.contains("no data plane in common with node a") == true, "\(toA.fault?.reason ?? "no fault")")
        // /os/dataplane says so too.
        let planes = try #require(try await a.kernel.call(.get, "/os/dataplane"))
        #expect(planes.child("Offered")?.text == "tcp")
        let choice = planes.elements.first { $0.name.local == "Choice" && $0.child("Node")?.text == "b" }
        #expect(choice?.child("Offers")?.text == "" && choice?.child("Chosen")?.text == "none")
        // Calls without buffers are untouched.
        #expect(try await a.kernel.call(.get, "decos://b/counter") != nil)
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aSentBuffersOfferEndsWhenItsBytesAreOutNotWhenTheCallEnds() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/sleepy")
        // The handler never answers; the buffer it was sent with has long arrived.
        let answered = Answered()
        let call = Task {
            _ = await a.kernel.send(Message(.submit, to: "decos://b/sleepy", body: Element("Nap", text: "slow"),
                                            buffers: [BufferRef(id: "blob", buffer: DataBuffer([UInt8](repeating: 1, count: 3 << 20)))]), as: .system)
            answered.set()
        }
        func atA() -> PeerTraffic? { a.network?.dataTraffic.first { $0.node == "b" } }
        try await until("the condition awaited here") { atA()?.bytesSent == 3 << 20 }
        try await until("the condition awaited here") { atA()?.offered == 0 }
        #expect(a.network?.dataTraffic.first { $0.node == "b" }?.sending == 0)
        #expect(!answered.value)  // the call is still waiting for its reply
        call.cancel()
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func pendingCallsFaultWhenThePeerGoes() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/silent")
        async let reply = a.kernel.send(Message(.submit, to: "decos://b/silent"), as: .system)
        try await until("b has taken the call") { b.network!.answersOwed!.count == 1 }
        await b.network?.stop()
        let f = await reply.fault
        #expect(f?.subcode?.local == "Unreachable")
        try await waitUntil(a, drops: "decos://b/counter")
        await a.network?.stop()
    }

    @Test func aSilentServiceCostsATimeoutFault() async throws {
        let a = try await bootNode("a", requestTimeout: 1)
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/silent")
        let r = await a.kernel.send(Message(.submit, to: "decos://b/silent"), as: .system)
        #expect(r.fault?.subcode?.local == "Timeout")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func membershipDatagramsCountOnlyWhenSealedWithTheClusterKey() async throws {
        let a = try await bootNode("a")
        let port = a.clusterAddress!.port!
        // Gossip naming a member "ghost", sent as one UDP datagram to a's cluster port.
        func announce(_ ghost: String, key: ClusterKey) {
            DistributingKernelTests.announce(Membership.Member(name: "ghost-\(ghost)", address: "127.0.0.1:9", incarnation: 1, status: .alive),
                                             toPort: port, key: key)
        }
        func known(_ name: String) -> Bool { a.network?.members.contains { $0.name == name } ?? false }
        announce("forged", key: ClusterKey(Array("another-cluster-key-fedcba9876543210".utf8)))
        announce("sealed", key: clusterKey)
        try await until("the condition awaited here") { known("ghost-sealed") }
        // Sent first, on the same path: had it counted, it would be known by now.
        #expect(!known("ghost-forged"))
        await a.network?.stop()
    }

    @Test func busyEventLoopsDoNotMakeANodeLookDead() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        try await waitUntil(b, lists: "decos://a/counter")
        func view(_ n: Node, of name: String) -> Membership.Member? { n.network?.members.first { $0.name == name } }
        let before = (view(a, of: "b")!, view(b, of: "a")!)
        // Every loop that carries the nodes' connections is held for longer than a silent member
        // takes to be suspected and declared dead (probe 0.2 s + suspicion 0.8 s), as a long
        // computation in a handler would hold one.
        let held = MultiThreadedEventLoopGroup.singleton.makeIterator().map { $0.submit { usleep(3_000_000) } }
        for h in held { try await h.get() }
        try await Task.sleep(for: .milliseconds(500))
        // Neither was ever suspected: a suspicion refuted would have raised the incarnation.
        #expect(view(a, of: "b") == before.0)
        #expect(view(b, of: "a") == before.1)
        #expect(paths(a).contains("decos://b/counter"))
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aNodeThatStopsSaysFarewellAndIsSeenAsLeftNotDead() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        // stop() returns once its farewell is written: a learns b left, and never takes it for dead
        // (which its failure detector would, past the suspicion timeout, had the farewell been lost).
        await b.network?.stop()
        try await until("a sees b as left") { a.network!.members.first { $0.name == "b" }?.status == .left }
        await a.network?.stop()
    }

    @Test func aStoppingNodeAnswersTheCallsPeersMadeBeforeItSaysFarewell() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/sleepy")
        let call = Task { await a.kernel.send(Message(.submit, to: "decos://b/sleepy", body: Element("Nap", text: "nap 300")), as: .system) }
        try await until("b has taken the call") { b.network!.answersOwed!.count == 1 }
        await b.network?.stop()
        let reply = await call.value
        #expect(reply.kind != .fault && reply.body?.name.local == "Awake", "\(reply.fault?.reason ?? "")")
        await a.network?.stop()
    }

    @Test func aPeersRequestArrivingOnceTheNodeIsStoppingGetsAFaultNotAPlaceInTheQueue() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/sleepy")
        let gate = "peer-stop-\(UInt64.random(in: 0...UInt64.max))"
        let held = Task { await a.kernel.send(Message(.submit, to: "decos://b/sleepy", body: Element("Nap", text: "gate \(gate)")), as: .system) }
        try await until("b has taken the call") { b.network!.answersOwed!.count == 1 }
        let stopped = Task { await b.network?.stop() }
        try await until("b is stopping") { b.network!.isStopping }
        // Taken, it would be owed too, and under steady calls the stop would wait its whole bound.
        let late = await a.kernel.send(Message(.get, to: "decos://b/counter"), as: .system)
        #expect(late.fault?.subcode?.local == "Stopping", "\(late.fault?.reason ?? "answered")")
        #expect(b.network!.answersOwed!.count == 1)
        Gates.open(gate)
        await stopped.value
        #expect(await held.value.body?.name.local == "Awake")
        await a.network?.stop()
    }

    @Test func aPeerWithTheWrongKeyIsRefused() async throws {
        let a = try await bootNode("a")
        let otherKey = NSTemporaryDirectory() + "decos-wrong-\(getpid()).key"
        try "another-cluster-key-fedcba9876543210".write(toFile: otherKey, atomically: true, encoding: .utf8)
        let mallory = try await bootNode("mallory", seed: address(a), key: otherKey)
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        try await Task.sleep(for: .seconds(1))
        #expect(!paths(a).contains("decos://mallory/counter"))
        #expect(!(a.network?.members.contains { $0.name == "mallory" } ?? true))
        #expect(paths(mallory) == ["decos://mallory/counter"])
        for n in [a, b, mallory] { await n.network?.stop() }
    }
}
