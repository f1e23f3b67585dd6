@testable import DistributingKernel
import Infoset
import ServiceKernel
import Testing
import TestKit

/// The namespace replica alone: messages in, effects out, no network or clock.
@Suite(.bounded) struct NamespaceReplicaTests {
    typealias R = NamespaceReplica

    func entry(_ owner: String, _ path: String) -> DirectoryEntry {
        DirectoryEntry(uri: "decos://\(owner)\(path)", path: path, contract: "urn:decos:examples:kv", node: owner)
    }

    let everyone: R.Live = { _ in true }

    @Test func aTableIsTakenFromItsOwnerAloneAndOnlyWhenNewer() {
        var a = R(node: "a", firstVersion: 100)
        let refused = a.receive(.table(owner: "c", version: .max, entries: [entry("c", "/evil")]), from: "mallory", live: everyone)
        #expect(refused.count == 1 && a.remoteEntries.isEmpty)
        guard case .refused(let why) = refused.first else { Issue.record("not refused: \(refused)"); return }
        #expect(why.contains("taken from that node alone"))

        #expect(a.receive(.table(owner: "c", version: 5, entries: [entry("c", "/x"), entry("c", "/y")]), from: "c", live: everyone)
            == [.inserted(entry("c", "/x")), .inserted(entry("c", "/y"))])
        // An older or equal version changes nothing; a newer one says what came and went.
        #expect(a.receive(.table(owner: "c", version: 5, entries: []), from: "c", live: everyone).isEmpty)
        #expect(a.receive(.table(owner: "c", version: 4, entries: []), from: "c", live: everyone).isEmpty)
        #expect(a.receive(.table(owner: "c", version: 6, entries: [entry("c", "/y"), entry("c", "/z")]), from: "c", live: everyone)
            == [.inserted(entry("c", "/z")), .deleted(entry("c", "/x"))])
        #expect(a.version(of: "c") == 6)
        // Nobody, not even a node claiming to be this one, replaces this node's own table.
        #expect(a.receive(.table(owner: "a", version: .max, entries: []), from: "a", live: everyone).isEmpty)
        #expect(a.version == 100)
    }

    @Test func aDeadOwnersTableIsNotTakenAndAForgottenOneIsDeleted() {
        var a = R(node: "a", firstVersion: 1)
        #expect(a.receive(.table(owner: "d", version: 9, entries: [entry("d", "/x")]), from: "d", live: { $0 != "d" }).isEmpty)
        #expect(a.remoteEntries.isEmpty)
        _ = a.receive(.table(owner: "d", version: 9, entries: [entry("d", "/x")]), from: "d", live: everyone)
        #expect(a.forget("d") == [.deleted(entry("d", "/x"))])
        #expect(a.version(of: "d") == 0 && a.forget("d").isEmpty)
    }

    @Test func aChangeIsPushedToEveryPeerWithANewVersion() {
        var a = R(node: "a", firstVersion: 10)
        let effects = a.localChanged([entry("a", "/kv")], peers: ["b", "c"])
        let table = R.Message.table(owner: "a", version: 11, entries: [entry("a", "/kv")])
        #expect(effects == [.send(table, to: "b"), .send(table, to: "c")])
    }

    @Test func equalSummariesEndTheExchangeAndADifferentOneIsAnsweredWithTheDigest() {
        var a = R(node: "a", firstVersion: 10), b = R(node: "b", firstVersion: 20)
        _ = a.receive(.table(owner: "b", version: 20, entries: []), from: "b", live: everyone)
        _ = b.receive(.table(owner: "a", version: 10, entries: []), from: "a", live: everyone)
        guard case .send(let summary, "b") = a.sync(with: "b") else { Issue.record("no summary"); return }
        #expect(b.receive(summary, from: "a", live: everyone).isEmpty)

        _ = a.localChanged([entry("a", "/new")], peers: [])  // the push to b was lost
        guard case .send(let newer, "b") = a.sync(with: "b") else { Issue.record("no summary"); return }
        let answer = b.receive(newer, from: "a", live: everyone)
        #expect(answer == [.send(.digest(b.digest, reply: true), to: "a")])
        // a's answer to b's digest: its own table (b's copy is older), and nothing more.
        guard case .send(let digest, "a") = answer.first else { Issue.record("no digest"); return }
        let repair = a.receive(digest, from: "b", live: everyone)
        #expect(repair == [.send(.table(owner: "a", version: 11, entries: [entry("a", "/new")]), to: "b")])
    }

    @Test func aDigestAsksTheOwnerOfANewerTableNotTheMessenger() {
        var a = R(node: "a", firstVersion: 10)
        let digest = R.Message.digest([R.Version("b", 1), R.Version("c", 7), R.Version("c", 7), R.Version("a", 10)], reply: false)
        let effects = a.receive(digest, from: "b", live: everyone)
        // b's table is asked of b only when b's digest was an answer; c's is asked of c, once,
        // with our copy's version alone.
        #expect(effects == [.send(.digest([R.Version("c", 0)], reply: false), to: "c")])
        #expect(a.receive(digest, from: "b", live: { $0 != "c" }).isEmpty)
        let answered = a.receive(.digest([R.Version("b", 1)], reply: true), from: "b", live: everyone)
        #expect(answered == [.send(.table(owner: "a", version: 10, entries: []), to: "b"), .send(.digest([R.Version("b", 0)], reply: false), to: "b")])
    }

    @Test func aGreetingSendsOurTableAndAsksForTheirsWhichTheyAnswerOnlyIfOursIsOlder() {
        var a = R(node: "a", firstVersion: 10, entries: [entry("a", "/kv")])
        var b = R(node: "b", firstVersion: 20, entries: [entry("b", "/counter")])
        let greeting = a.greet("b")
        #expect(greeting.count == 2)
        var answers: [R.Effect] = []
        for case .send(let m, "b") in greeting { answers += b.receive(m, from: "a", live: everyone) }
        #expect(answers == [.inserted(entry("a", "/kv")), .send(.table(owner: "b", version: 20, entries: [entry("b", "/counter")]), to: "a")])
        for case .send(let m, "a") in answers { _ = a.receive(m, from: "b", live: everyone) }
        #expect(a.version(of: "b") == 20)
        // Greeted again with nothing new, b sends nothing back.
        var again: [R.Effect] = []
        for case .send(let m, "b") in a.greet("b") { again += b.receive(m, from: "a", live: everyone) }
        #expect(again.isEmpty)
    }

    @Test func everyMessageSurvivesTheWireAndASummaryOfManyTablesToo() throws {
        let messages: [R.Message] = [
            .digest([R.Version("a", 1), R.Version("bé", .max)], reply: true),
            .table(owner: "c", version: 3, entries: [entry("c", "/x"), entry("c", "/y")]),
            // More tables than the summary has bytes after its count: a cluster of nine or more.
            .summary(count: 1000, hash: 0xdead_beef),
        ]
        for m in messages { #expect(try R.Message(decoding: m.encoded) == m) }
    }

    @Test func aTruncatedOrForgedMessageIsAnErrorAtEveryByte() {
        let table = R.Message.table(owner: "c", version: 3, entries: [entry("c", "/x")]).encoded
        for cut in 0..<table.count {
            #expect(throws: ByteReader.Failure.self) { try R.Message(decoding: Array(table[..<cut])) }
        }
        var w = ByteWriter()
        w.byte(1); w.string("c"); w.u64(1); w.varint(UInt64(R.maxTableEntries + 1))
        for _ in 0...R.maxTableEntries { w.string(""); w.string("") }
        #expect(throws: ByteReader.Failure.self) { try R.Message(decoding: w.bytes) }
        #expect(throws: ByteReader.Failure.self) { try R.Message(decoding: [9]) }
    }
}
