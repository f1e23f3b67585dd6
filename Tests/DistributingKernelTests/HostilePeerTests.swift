@testable import Decos
@testable import DistributingKernel
import Dispatch
import Infoset
import ServiceKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestKit

/// What a peer sends is checked before it costs this node memory, and buffers reach only the
/// node they were sent to, whole.
@Suite(.bounded, .serialized) struct HostilePeerTests {
    @Test func buffersForNoServiceAreRefusedBeforeAnythingIsPulled() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        do {
            _ = try await a.kernel.call(.submit, "decos://b/nothing", buffers: [BufferRef(id: "blob", buffer: DataBuffer([UInt8](repeating: 1, count: 1 << 20)))])
            Issue.record("a call to no service succeeded")
        } catch {
            #expect(error.subcode?.local == "UnknownService")
        }
        // Refused from the message alone: b never opened a data link to pull the buffer.
        #expect(b.network?.openDataLinks == [])
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func buffersOverTheLimitAreRefusedWithAFaultNamingIt() async throws {
        let a = try await bootNode("a")
        let incoming = Wire.Incoming(correlation: 1, message: Message(.submit, to: "/sink"),
                                     buffers: [("x", Int.max, Wire.Offer(plane: 1, descriptor: [])), ("y", 5, Wire.Offer(plane: 1, descriptor: []))])
        let fault = try #require(a.network?.bufferProblem(incoming))
        #expect(fault.subcode?.local == "TooLarge")
        #expect(fault.reason.contains("\(a.network!.config.maxBufferBytes)"))
        await a.network?.stop()
    }

    @Test func aReplysBuffersArePulledOnlyForACallToItsSenderAndOneThatCannotBeIsAFault() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        let c = try await bootNode("c", seed: address(a))
        try await waitUntil(a, lists: "decos://b/silent", "decos://c/counter")
        let call = Task { await a.kernel.send(Message(.submit, to: "decos://b/silent"), as: .system) }
        try await until("the call to b is pending") { a.network!.calls.count == 1 }
        let correlation = a.network!.calls.ids { _ in true }[0]
        // A reply to it, with a buffer offered as transfer 999999 on the TCP plane.
        var reply = Message(.submit, to: "", kind: .response)
        reply.buffers = [BufferRef(id: "x", buffer: DataBuffer([1, 2, 3]))]
        var descriptor = ByteWriter()
        descriptor.u64(999_999)
        var frame = ByteWriter()
        Wire.encode(reply, correlation: correlation, offers: [Wire.Offer(plane: PlaneKind.tcp.rawValue, descriptor: descriptor.bytes)], into: &frame)
        // From c, which the call did not go to: dropped, nothing pulled, the call still waits.
        a.network!.handleReply(ByteReader(frame.bytes), from: "c")
        #expect(a.network!.openDataLinks == [])
        #expect(a.network!.calls.count == 1)
        // From b, naming a transfer b never offered: the call ends with a fault naming the
        // buffer, not a hang and not a reply without it.
        a.network!.handleReply(ByteReader(frame.bytes), from: "b")
        let answer = await call.value
        #expect(answer.kind == .fault && answer.fault?.reason.contains("buffer x from b") == true, "\(answer.fault?.reason ?? "a reply")")
        for n in [a, b, c] { await n.network?.stop() }
    }

    @Test func aCallWhoseReplyIsBeingPulledOutlivesItsDeadlineWhileBytesArriveAndNoLonger() async throws {
        // Driven by the sweep's own clock (`expireCalls(now:)`), not by waiting out a timeout.
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/silent", "decos://b/echo")
        let network = a.network!
        // Some bytes from b first (an echo's reply), for the pull's mark to be below.
        let echoed = await a.kernel.send(Message(.submit, to: "decos://b/echo", buffers: [BufferRef(id: "x", buffer: DataBuffer([1, 2, 3]))]), as: .system)
        #expect(echoed.buffers.count == 1)
        let call = Task { await a.kernel.send(Message(.submit, to: "decos://b/silent"), as: .system) }
        try await until("the call to b is pending") { network.calls.count == 1 }
        let id = network.calls.ids { _ in true }[0]
        // Its reply came with buffers, and bytes from b arrived since (its mark is below them).
        let received = network.bytesReceived(from: "b")
        try #require(received > 0)
        _ = try #require(network.calls.startPulling(id, from: "b", deadline: network.calls.deadline(of: id)!, progress: received - 1))
        let late = network.calls.deadline(of: id)! + 1
        network.expireCalls(now: late)
        #expect(network.calls.deadline(of: id) == late + network.timeoutMillis, "a pull that moved was timed out")
        // No byte since: the next sweep past the new deadline ends it.
        network.expireCalls(now: late + network.timeoutMillis)
        let answer = await call.value
        #expect(answer.fault?.subcode?.local == "Timeout", "\(answer.fault?.reason ?? "a reply")")
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func buffersAPeerNeverPullsAreCappedPerPeer() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        _ = try await a.kernel.call(.get, "decos://b/counter")  // connected: b's planes are known
        let network = a.network!
        let blob = [BufferRef(id: "x", buffer: DataBuffer([UInt8](repeating: 1, count: 1000)))]
        #expect(network.offerRoom(for: blob, to: "b", limit: 1500) == nil)
        // Offered as a reply's or a notification's are (withdrawn only by lapsing), never pulled.
        guard case .success = await network.export(blob, call: 0, to: "b", expires: network.now + 60_000) else {
            Issue.record("the offer was not made")
            return
        }
        let full = network.offerRoom(for: blob, to: "b", limit: 1500)
        #expect(full?.subcode?.local == "ResourceExhausted" && full?.reason.contains("1000 bytes") == true, "\(full?.reason ?? "room")")
        // Another peer's room is its own.
        #expect(network.offerRoom(for: blob, to: "c", limit: 1500) == nil)
        for n in [a, b] { await n.network?.stop() }
    }

    @Test func anExportIsPullableOnlyByThePeerItWasSentTo() async throws {
        let a = try await bootNode("a")
        let b = try await bootNode("b", seed: address(a))
        let c = try await bootNode("c", seed: address(a))
        try await waitUntil(a, lists: "decos://b/counter")
        try await waitUntil(c, lists: "decos://a/counter")
        // a sends b a buffer for a call that stays pending (the service never answers), so the
        // export lives; c, another member holding the same cluster key, asks a for it by number.
        let secret = DataBuffer([UInt8](repeating: 0x5A, count: 4096))
        let call = Task { try? await a.kernel.call(.submit, "decos://b/silent", buffers: [BufferRef(id: "blob", buffer: secret)]) }
        try await until("the condition awaited here") { b.network?.openDataLinks == ["a"] }
        let stolen = await c.network?.tcp.fetch(transfer: 1, length: 4096, from: "a")
        #expect(!arrived(stolen))
        call.cancel()
        for n in [a, b, c] { await n.network?.stop() }
    }

    @Test func anImportWithADuplicateChunkFailsInsteadOfHandingOverUnwrittenBytes() async throws {
        let b = try await bootNode("b")
        let evil = try EvilDataPeer(name: "evil", key: clusterKey, chunks: { transfer in
            // Two chunks that both claim offset 0: the byte count adds up, the second half is never written.
            let half = [UInt8](repeating: 0xEE, count: 1 << 20)
            return [(transfer, 0, half), (transfer, 0, half)]
        })
        b.network!.links.heard("evil", .init(address: "127.0.0.1:\(evil.port)"))
        let got = await b.network!.tcp.fetch(transfer: 7, length: 2 << 20, from: "evil")
        #expect(!arrived(got))
        await b.network?.stop()
    }
}

extension HostilePeerTests {
    /// A message may name one transfer in two of its buffers; both are fetched at once. The second
    /// import took the first one's place in the table, and the first's block never went back to
    /// the pool (nor did its caller ever hear back). Now the second is refused and the first
    /// goes on as before.
    @Test func aTransferNamedTwiceIsRefusedAndLeaksNoBlock() async throws {
        let b = try await bootNode("b")
        let (pulled, pulls) = AsyncStream.makeStream(of: UInt64.self)
        let count = Mutex(0)
        let evil = try EvilDataPeer(name: "evil", key: clusterKey, chunks: { transfer in
            pulls.yield(transfer)
            // The first pull gets nothing yet: its import stays in the table. A second pull (the
            // old code sent one) gets the whole buffer, so the second fetch ends either way.
            let n = count.withLock { $0 += 1; return $0 }
            return n == 1 ? [] : [(transfer, UInt64(0), [UInt8](repeating: 0xEE, count: 4096))]
        })
        b.network!.links.heard("evil", .init(address: "127.0.0.1:\(evil.port)"))
        let tcp = b.network!.tcp
        let first = Task { await tcp.fetch(transfer: 7, length: 4096, from: "evil") }
        var pulledNext = pulled.makeAsyncIterator()
        #expect(await pulledNext.next() == 7)  // the first import is in the table and pulled
        let refusal: Fault? = switch await tcp.fetch(transfer: 7, length: 4096, from: "evil") {
        case .success: nil  // the buffer goes back to the pool here
        case .failure(let fault): fault
        }
        guard let fault = refusal else {
            // The old code: the second import took the first one's place; the first's block is out for good.
            Issue.record("the second import of transfer 7 was taken; bytes still in use: \(tcp.pools.usage.map(\.inUse))")
            return
        }
        #expect(fault.reason.contains("transfer 7"))
        // The first import is still awaited: it ends, its block back, when the link ends.
        await b.network?.stop()
        #expect(!arrived(await first.value))
        #expect(tcp.pools.usage.map(\.inUse).allSatisfy { $0 == 0 }, "blocks in use: \(tcp.pools.usage.map(\.inUse))")
    }
}

/// The far end of a data link played by the test: it completes the handshake with the cluster
/// key, then answers each DATA_PULL with whatever chunks it is told to send.
final class EvilDataPeer: @unchecked Sendable {  // set up once, then used by its one thread only
    let port: Int
    private let listener: Int32

    init(name: String, key: ClusterKey, chunks: @escaping @Sendable (UInt64) -> [(UInt64, UInt64, [UInt8])]) throws {
        (listener, port) = try #require(listenOnLoopback())
        let fd = listener
        DispatchQueue(label: "evil-peer").async {
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { return }
            defer { close(conn) }
            func readFrame() -> (UInt8, [UInt8])? {
                var h = [UInt8](repeating: 0, count: 6)
                guard recv(conn, &h, 6, Int32(MSG_WAITALL)) == 6 else { return nil }
                let n = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
                var p = [UInt8](repeating: 0, count: n - 2)
                guard p.isEmpty || recv(conn, &p, n - 2, Int32(MSG_WAITALL)) == n - 2 else { return nil }
                return (h[5], p)
            }
            var session: Session?
            func send(_ frame: Wire.Frame) {
                let b = session != nil ? session!.sending.seal(frame) : frame.encoded()
                _ = Glibc.send(conn, b, b.count, Int32(MSG_NOSIGNAL))
            }
            guard let (_, hello) = readFrame(), let theirs = try? Handshake.Hello.decode(hello) else { return }
            let nonce = Handshake.nonce()
            let mine = Handshake.Hello(role: .data, node: name, address: "127.0.0.1:\(self.port)", nonce: nonce).encoded()
            send(Wire.Frame(.hello, mine))
            guard readFrame() != nil else { return }
            send(Wire.Frame(.auth, key.mac(fromHello: mine, toHello: hello)))
            // It holds the key, so it seals as a node does: what it sends is hostile, not forged.
            session = key.ciphers(role: .data, myNonce: nonce, theirNonce: theirs.nonce, me: name, peer: theirs.node, peerKey: 0)
            while let (type, sealed) = readFrame() {
                guard let pull = session!.receiving.open(Wire.Frame(rawType: type, sealed))?.first,
                      pull.known == .dataPull else { continue }
                var r = ByteReader(pull.payload)
                guard let transfer = try? r.u64() else { return }
                for (t, offset, bytes) in chunks(transfer) {
                    var w = ByteWriter()
                    w.u64(t)
                    w.u64(offset)
                    w.bytes += bytes
                    send(Wire.Frame(.dataChunk, w.bytes))
                }
            }
        }
    }

    deinit { close(listener) }
}

/// A TCP socket listening on an ephemeral loopback port, and the port; nil if it cannot be had.
func listenOnLoopback() -> (Int32, Int)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    var size = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &a) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &size) == 0 }
    }
    guard ok else { close(fd); return nil }
    return (fd, Int(UInt16(bigEndian: a.sin_port)))
}

/// Whether a fetch brought the buffer.
func arrived(_ fetched: Result<DataBuffer, Fault>?) -> Bool {
    if case .success? = fetched { true } else { false }
}
