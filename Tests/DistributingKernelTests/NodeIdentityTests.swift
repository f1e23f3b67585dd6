import Decos
@testable import DistributingKernel
import Foundation
import Infoset
import Synchronization
import ServiceKernel
import Testing
#if canImport(Glibc)
import Glibc
import TestKit
#endif

/// A node is its name and its life (`Epoch`): recorded datagrams are taken once, and a member of
/// the cluster speaks only for itself — it cannot answer another node's calls or publish another
/// node's table.
@Suite(.bounded, .serialized) struct NodeIdentityTests {
    @Test func aReplayWindowTakesEachDatagramOnceAndANewLifeAfresh() {
        var w = ReplayWindow(epoch: 5, sequence: 100)
        // Each datagram in turn, and whether it is taken.
        let heard: [(epoch: UInt64, sequence: UInt64, taken: Bool)] = [
            (5, 100, false),    // the same again
            (5, 99, true),      // late, but new
            (5, 99, false),
            (5, 170, true),     // far ahead: the window moves
            (5, 100, false),    // now too old to tell: refused
            (5, 150, true),
            (4, 1_000, false),  // an earlier life
            (6, 1, true),       // a restart starts afresh
            (5, 171, false),
        ]
        for h in heard {
            let taken = w.accept(epoch: h.epoch, sequence: h.sequence)
            #expect(taken == h.taken, "epoch \(h.epoch) sequence \(h.sequence)")
        }
        #expect(w.epoch == 6 && w.highest == 1)
        // Its clock went back: its HELLO names an older life, which is taken from then on, and
        // recorded datagrams of the lives it left (5 and 6) are not.
        w.restart(epoch: 3)
        let afterRestart = [w.accept(epoch: 3, sequence: 1), w.accept(epoch: 6, sequence: 2), w.accept(epoch: 5, sequence: 200), w.accept(epoch: 7, sequence: 1)]
        #expect(afterRestart == [true, false, false, true])
    }

    @Test func aRecordedDatagramSentAgainChangesNothing() async throws {
        let a = try await bootNode("a")
        let port = a.clusterAddress!.port!
        let ghost = Membership.Member(name: "ghost", address: "127.0.0.1:9", incarnation: Epoch.firstIncarnation(Epoch.now()), status: .alive)
        let recorded = MembershipDatagrams.datagram(Wire.encode(.gossip(members: [ghost]), from: ghost), epoch: ghost.epoch, sequence: 7, to: "a", key: clusterKey)
        send(datagram: recorded, toPort: port)
        try await until("the condition awaited here") { a.network?.members.contains { $0.name == "ghost" } ?? false }
        send(datagram: recorded, toPort: port)
        try await until("the condition awaited here") { a.network?.droppedDatagrams.replayed.load(ordering: .relaxed) == 1 }
        // One sent to another node, sent here: not for a, so dropped as a replay too.
        let elsewhere = MembershipDatagrams.datagram(Wire.encode(.gossip(members: [ghost]), from: ghost), epoch: ghost.epoch, sequence: 8, to: "b", key: clusterKey)
        send(datagram: elsewhere, toPort: port)
        try await until("the condition awaited here") { a.network?.droppedDatagrams.replayed.load(ordering: .relaxed) == 2 }
        await a.network?.stop()
    }

    @Test func aRestartsFirstIncarnationOutbidsEveryRumourOfItsOldLife() {
        // The old life was declared dead at the highest incarnation it reached (a thousand
        // refutations in); the new life, a millisecond later, still outranks it.
        let old = Membership.Member(name: "x", address: "h:1", incarnation: Epoch.firstIncarnation(1_000_000) + 1000, status: .dead)
        let new = Membership.Member(name: "x", address: "h:1", incarnation: Epoch.firstIncarnation(1_000_001), status: .alive)
        #expect(new.overrides(old) && !old.overrides(new))
        #expect(new.epoch == 1_000_001 && old.epoch == 1_000_000)
        var m = Membership(name: "a", address: "h:0", seed: 1, incarnation: Epoch.firstIncarnation(7))
        _ = m.merge([old], from: "b", now: 0)
        let effects = m.merge([new], from: "x", now: 1)
        #expect(effects.contains(.restarted(new)))
    }

    @Test func aMemberCannotPublishAnotherNodesTable() async throws {
        let a = try await bootNode("a")
        let c = try await bootNode("c", seed: address(a))
        try await waitUntil(a, lists: "decos://c/counter")
        // Mallory holds the key and speaks for c: a table of its making, at the highest version.
        let mallory = try FakeMember(name: "mallory", port: a.clusterAddress!.port!)
        var w = ByteWriter()
        w.byte(1); w.string("c"); w.u64(UInt64.max); w.varint(1); w.string("/evil"); w.string("urn:decos:examples:kv")
        mallory.send(Wire.Frame(.directory, w.bytes))
        // Frames of one connection are taken in order: once Mallory's gossip about itself is in,
        // its table has been dealt with too.
        let me = Membership.Member(name: "mallory", address: "127.0.0.1:9", incarnation: Epoch.firstIncarnation(Epoch.now()), status: .alive)
        mallory.send(Wire.Frame(.swim, Wire.encode(.gossip(members: [me]), from: me)))
        try await until("the condition awaited here") { a.network?.members.contains { $0.name == "mallory" } ?? false }
        #expect(!a.kernel.clusterEntries.contains { $0.uri == "decos://c/evil" })
        // c's own next change still reaches a (its table was not frozen), and the forged one never did.
        _ = try await c.kernel.create(ServiceConfig(contract: "urn:decos:examples:kv", name: "/later"))
        try await waitUntil(a, lists: "decos://c/later")
        #expect(!a.kernel.clusterEntries.contains { $0.uri == "decos://c/evil" })
        for n in [a, c] { await n.network?.stop() }
    }

    @Test func aMemberCannotAnswerACallMadeToAnotherNode() async throws {
        let a = try await bootNode("a", requestTimeout: 2)
        let c = try await bootNode("c", seed: address(a))
        try await waitUntil(a, lists: "decos://c/silent")
        let mallory = try FakeMember(name: "mallory", port: a.clusterAddress!.port!)
        // A call to c that c never answers; Mallory answers every correlation it could have.
        async let call = a.kernel.send(Message(.submit, to: "decos://c/silent"), as: .system)
        try await until("the condition awaited here") { a.network?.calls.count == 1 }
        let pending = try #require(a.network?.calls.ids { _ in true })
        for correlation in pending {
            var w = ByteWriter()
            var forged = Message.response(to: Message(.submit, to: "decos://c/silent"), body: Element("Forged"))
            forged.to = "decos://a/"
            Wire.encode(forged, correlation: correlation, offers: [], into: &w)
            mallory.send(Wire.Frame(.reply, w.bytes))
        }
        let reply = await call
        #expect(reply.body?.name.local != "Forged")
        #expect(reply.fault?.subcode?.local == "Timeout")
        for n in [a, c] { await n.network?.stop() }
    }
}

/// A cluster member played by the test over a blocking socket: it completes the handshake with the
/// cluster's key, then sends whatever sealed frames it is told to.
final class FakeMember {
    private let connection: RawConnection
    var fd: Int32 { connection.fd }
    private var session: Session?

    init(name: String, port: Int, key: ClusterKey = clusterKey) throws {
        connection = try RawConnection(port: port, timeout: .seconds(10))
        let nonce = Handshake.nonce()
        let mine = Handshake.Hello(role: .control, node: name, address: "127.0.0.1:9", nonce: nonce, epoch: Epoch.now()).encoded()
        write(Wire.Frame(.hello, mine).encoded())
        guard let (_, theirs) = readFrame(), let hello = try? Handshake.Hello.decode(theirs) else { throw CancellationError() }
        write(Wire.Frame(.auth, key.mac(fromHello: mine, toHello: theirs)).encoded())
        guard let (type, _) = readFrame(), type == Wire.FrameType.auth.rawValue else { throw CancellationError() }
        session = key.ciphers(role: .control, myNonce: nonce, theirNonce: hello.nonce, me: name, peer: hello.node, peerKey: 0)
    }

    func send(_ frame: Wire.Frame) { write(session!.sending.seal(frame)) }

    private func write(_ bytes: [UInt8]) { _ = Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) }

    private func readFrame() -> (UInt8, [UInt8])? {
        var h = [UInt8](repeating: 0, count: 6)
        guard recv(fd, &h, 6, Int32(MSG_WAITALL)) == 6 else { return nil }
        let n = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
        guard n >= 2, n < 1 << 20 else { return nil }
        var p = [UInt8](repeating: 0, count: n - 2)
        guard p.isEmpty || recv(fd, &p, n - 2, Int32(MSG_WAITALL)) == n - 2 else { return nil }
        return (h[5], p)
    }
}

/// A peer that sends requests faster than they are answered: its connection stops being read.
@Suite(.bounded) struct RequestBacklogTests {
    @Test func aConnectionStopsReadingPastItsBoundAndReadsAgainOnceHalfAreAnswered() {
        let switched = Mutex<[Bool]>([])
        let backlog = RequestBacklog { on in switched.withLock { $0.append(on) } }
        for _ in 0..<(RequestBacklog.limit - 1) { backlog.began() }
        #expect(switched.withLock { $0 }.isEmpty)
        backlog.began()
        backlog.began()
        #expect(switched.withLock { $0 } == [false])
        for _ in 0..<(RequestBacklog.limit / 2) { backlog.ended() }
        #expect(switched.withLock { $0 } == [false])
        backlog.ended()
        #expect(switched.withLock { $0 } == [false, true])
        #expect(backlog.waiting == RequestBacklog.limit / 2)
    }
}
