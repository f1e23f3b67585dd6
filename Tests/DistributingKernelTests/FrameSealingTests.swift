import Decos
@testable import DistributingKernel
import Foundation
import Infoset
import NIOCore
import ServiceKernel
import Synchronization
import Testing
import TestKit

/// Frames between nodes are sealed after the handshake: a host on the path reads nothing of a
/// call or a buffer and changes nothing of them.
@Suite(.bounded, .serialized) struct FrameSealingTests {
    let key = ClusterKey(Array("cluster-key-for-the-sealing-tests".utf8))

    func session(_ me: String, _ peer: String, _ mine: [UInt8], _ theirs: [UInt8]) -> Session {
        key.ciphers(role: .control, myNonce: mine, theirNonce: theirs, me: me, peer: peer, peerKey: 0)
    }

    @Test func sealedFramesOpenOnlyInOrderAndUnchanged() throws {
        let na = Handshake.nonce(), nb = Handshake.nonce()
        let a = session("a", "b", na, nb)
        // b's end of the connection, as it is before it has opened anything.
        func b() -> FrameCipher { session("b", "a", nb, na).receiving }
        let secret = Array("the-secret-value".utf8)
        let frames = (0..<3).map { a.sending.seal(Wire.Frame(.request, secret + [UInt8($0)])) }
        for f in frames { #expect(!f.contains(secret)) }
        // Same plaintext but for its last byte, and no two sealed frames share their first bytes.
        #expect(Set(frames.map { $0.dropFirst(6).prefix(16) }).count == 3)
        #expect(frames.allSatisfy { $0[5] == Wire.FrameType.sealed.rawValue })
        func frame(_ bytes: [UInt8]) -> Wire.Frame { Wire.Frame(rawType: bytes[5], Array(bytes[6...])) }

        // Out of order (a frame dropped, or one replayed) does not open.
        #expect(b().open(frame(frames[1])) == nil)
        // A changed byte anywhere — ciphertext or tag — does not open; nor does a changed length
        // (the receiver would take a byte more or less as the frame).
        for i in [6, frames[0].count / 2, frames[0].count - 1] {
            var changed = frames[0]
            changed[i] ^= 1
            #expect(b().open(frame(changed)) == nil, "byte \(i) changed")
        }
        #expect(b().open(frame(frames[0] + [0])) == nil)
        #expect(b().open(frame(Array(frames[0].dropLast()))) == nil)
        #expect(b().open(Wire.Frame(rawType: Wire.FrameType.request.rawValue, Array(frames[0][6...]))) == nil)
        // In order, each opens to what was sealed.
        let inOrder = b()
        for (i, f) in frames.enumerated() { #expect(inOrder.open(frame(f))?.map(\.payload) == [secret + [UInt8(i)]]) }
        // Several frames written at once travel in one sealed frame, and come out as they went in.
        var batch = ByteBuffer()
        let two = Wire.Frame(.request, [1, 2, 3]).encoded() + Wire.Frame(.reply, secret).encoded()
        two.withUnsafeBytes { a.sending.seal($0, into: &batch) }
        let opened = inOrder.open(frame(Array(batch.readableBytesView)))
        #expect(opened?.map(\.type) == [Wire.FrameType.request.rawValue, Wire.FrameType.reply.rawValue])
        #expect(opened?.last?.payload == secret)
        // The other direction has a key of its own, and so has another connection between the same nodes.
        #expect(session("a", "b", na, nb).receiving.open(frame(frames[0])) == nil)
        #expect(session("b", "a", Handshake.nonce(), na).receiving.open(frame(frames[0])) == nil)
    }

    @Test(arguments: [true, false]) func aHostOnThePathReadsNothingOfACall(encryption: Bool) async throws {
        let b = try await bootNode("b", encryption: encryption)
        let tap = try TapProxy(to: b.clusterAddress!.port!)
        // a reaches b through the tap: its seed is the tap, and the connection opened to a seed
        // is the one it calls b on from then on.
        let a = try await bootNode("a", seed: "127.0.0.1:\(tap.port)", encryption: encryption)
        try await waitUntil(a, lists: "decos://b/counter")
        let entry = try XMLReader.parse("<Entry><Key>password</Key><Value>hunter2-correct-horse</Value></Entry>")
        _ = try await a.kernel.call(.upsert, "decos://b/kv", body: entry)
        let got = try await a.kernel.call(.get, "decos://b/kv")
        #expect(got.map { XMLWriter.string($0) }?.contains("hunter2-correct-horse") == true)
        #expect(tap.carried > 0)
        // Unsealed, the value and the key's name cross in the clear: the tap is placed right.
        #expect(tap.saw("hunter2-correct-horse") == !encryption)
        #expect(tap.saw("password") == !encryption)
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aChangedFrameEndsTheConnectionAndNoChangeIsApplied() async throws {
        let b = try await bootNode("b")
        let tap = try TapProxy(to: b.clusterAddress!.port!)
        let a = try await bootNode("a", seed: "127.0.0.1:\(tap.port)")
        try await waitUntil(a, lists: "decos://b/counter")
        _ = try await a.kernel.call(.get, "decos://b/counter")
        // The next bytes from a to b have their last bit flipped: the request's tag, so it fails to open.
        tap.corruptNext()
        let inc = try XMLReader.parse("<Increment><By>5</By></Increment>")
        do {
            _ = try await a.kernel.call(.update, "decos://b/counter", body: inc)
            Issue.record("a changed request was answered")
        } catch {
            #expect(error.reason.contains("lost"), "\(error)")
        }
        #expect(tap.corrupted)
        // b applied nothing, and a reaches b again (over a new connection).
        let value = try await a.kernel.call(.get, "decos://b/counter")
        #expect(value?.child("Value")?.text == "0")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func aPeerThatStopsReadingMakesSendsFailInsteadOfMemoryGrowing() async throws {
        let b = try await bootNode("b")
        let tap = try TapProxy(to: b.clusterAddress!.port!)
        let a = try await bootNode("a", seed: "127.0.0.1:\(tap.port)", requestTimeout: 3)
        try await waitUntil(a, lists: "decos://b/counter")
        tap.pause(true)
        // A hundred 1 MiB requests to a peer that reads nothing: once 64 MiB wait for it, the rest
        // are refused at once rather than queued; those queued time out.
        let body = Element("P", text: String(repeating: "x", count: 1 << 20))
        let reasons = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<100 { group.addTask { await a.kernel.send(Message(.submit, to: "decos://b/silent", body: body), as: .system).fault?.reason } }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        let refused = reasons.filter { $0?.contains("already waiting for this peer") == true }.count
        #expect(refused >= 20, "\(Set(reasons.compactMap { $0 }))")
        #expect(reasons.allSatisfy { $0 != nil })
        tap.pause(false)
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func buffersArriveWholeThroughSealedChunks() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        // Three chunks and a part: each chunk is sealed and opened on its own, in order.
        let bytes = TestPattern.bytes(3 * Wire.chunkSize + 4321)
        let reply = try await a.kernel.call(.submit, "decos://b/sink", buffers: [BufferRef(id: "blob", buffer: DataBuffer(bytes))])
        #expect(reply?.child("Bytes")?.text == String(bytes.count))
        #expect(reply?.child("Intact")?.text == "true")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func nodesThatDisagreeOnEncryptionRefuseEachOtherSayingWhy() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a), encryption: false)
        // b knocks on a with a sync over a connection a refuses; neither ever lists the other.
        let peers = await (a.network!.connection(to: "", address: address(b)), b.network!.connection(to: "", address: address(a)))
        #expect(peers.0 == nil && peers.1 == nil)
        #expect(!paths(a).contains("decos://b/counter") && !paths(b).contains("decos://a/counter"))
        #expect(Handshake.sealingProblem(mine: true, theirs: Handshake.Hello(role: .control, node: "b", address: "", nonce: [], sealed: false))?.contains("encryption=") == true)
        for n in [a, b] { await n.network?.stop() }
    }
}

/// A TCP relay between a node and the port of another, as a host on the path would be: it
/// records every byte both ways and can flip the last bit of the next read it relays.
///
/// `@unchecked Sendable`: the port and listener are set once; what the relay threads share is
/// behind `state`, and `paused` behind `resumed`.
final class TapProxy: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let state = Mutex<(bytes: [UInt8], corruptNext: Bool, corrupted: Bool, sockets: [Int32])>(([], false, false, []))
    /// Guards `paused`; a relay that is paused waits on it until `pause(false)` or the tap's end.
    private let resumed = NSCondition()
    private var paused = false

    init(to target: Int) throws {
        (listener, port) = try #require(listenOnLoopback())
        let fd = listener
        Thread { [self] in
            while case let client = accept(fd, nil, nil), client >= 0 {
                let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var to = sockaddr_in()
                to.sin_family = sa_family_t(AF_INET)
                to.sin_port = in_port_t(UInt16(target).bigEndian)
                to.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &to) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                guard connected else { close(client); close(server); continue }
                state.withLock { $0.sockets += [client, server] }
                Thread { self.relay(from: client, to: server, corrupting: true) }.start()
                Thread { self.relay(from: server, to: client, corrupting: false) }.start()
            }
        }.start()
    }

    private func relay(from: Int32, to: Int32, corrupting: Bool) {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        // Paused, it stops reading what the node sends, as a peer that stops reading would.
        while true {
            if corrupting {
                resumed.lock()
                while paused { resumed.wait() }
                resumed.unlock()
            }
            let n = recv(from, &buffer, buffer.count, 0)
            guard n > 0 else { break }
            let flip = state.withLock { s -> Bool in
                s.bytes += buffer[..<n]
                guard corrupting && s.corruptNext else { return false }
                s.corruptNext = false
                s.corrupted = true
                return true
            }
            if flip { buffer[n - 1] ^= 1 }
            guard send(to, buffer, n, Int32(MSG_NOSIGNAL)) == n else { break }
        }
        shutdown(from, Int32(SHUT_RDWR))
        shutdown(to, Int32(SHUT_RDWR))
    }

    var carried: Int { state.withLock { $0.bytes.count } }
    var corrupted: Bool { state.withLock { $0.corrupted } }
    func corruptNext() { state.withLock { $0.corruptNext = true } }
    func pause(_ paused: Bool) {
        resumed.lock()
        self.paused = paused
        resumed.broadcast()
        resumed.unlock()
    }
    func saw(_ text: String) -> Bool { state.withLock { $0.bytes.contains(Array(text.utf8)) } }

    deinit {
        pause(false)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in state.withLock({ $0.sockets }) { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }
}
