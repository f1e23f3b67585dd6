@testable import DistributingKernel
import Infoset
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import ServiceKernel
import Testing
import TestKit

/// The peer connection's handlers on `EmbeddedChannel`s: two ends in one thread, bytes carried
/// between them by the test, time moved by the test. No socket, no sleep.
@Suite(.bounded, .computeThread) struct PeerPipelineTests {
    /// A node as the pipeline sees it, recording what reaches it.
    final class Endpoint: PeerEndpoint, @unchecked Sendable {
        // @unchecked: touched only from the test's thread (EmbeddedChannel runs there).
        let node: String
        let key: ClusterKey
        let encrypt: Bool
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let handshakeTimeout = TimeAmount.seconds(5)
        let answersOwed: AnswersOwed? = nil
        var authenticatedPeers: [String] = []
        var frames: [(type: UInt8, payload: [UInt8])] = []
        var closedPeers: [String] = []

        init(_ node: String, key: ClusterKey = ClusterKey(Array(repeating: 7, count: 32)), encrypt: Bool = true) {
            self.node = node
            self.key = key
            self.encrypt = encrypt
        }

        func hello(role: Handshake.Role, nonce: [UInt8]) -> Handshake.Hello {
            Handshake.Hello(role: role, node: node, address: "\(node):1", nonce: nonce, sealed: encrypt)
        }
        /// What the handshake handed over once the peer authenticated: what the node sends on.
        var connection: PeerConnection?
        func authenticated(_ connection: PeerConnection, peer: Handshake.Hello, role: Handshake.Role, outbound: Bool) {
            authenticatedPeers.append(peer.node)
            self.connection = connection
        }
        func closed(_ connection: PeerConnection, peer: String, role: Handshake.Role) { closedPeers.append(peer) }
        func received(_ frame: Wire.Frame, from peer: String, role: Handshake.Role, on connection: PeerConnection, backlog: RequestBacklog) {
            frames.append((frame.type, frame.payload))
        }
    }

    struct End {
        let endpoint: Endpoint
        let channel: EmbeddedChannel

        init(_ endpoint: Endpoint, outbound role: Handshake.Role?) throws {
            self.endpoint = endpoint
            channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandlers(PeerPipeline.handlers(endpoint: endpoint, outboundRole: role))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        /// What the node sends on, once the peer has authenticated.
        var connection: PeerConnection { endpoint.connection! }

        /// Everything this end has written so far, as one byte array.
        func written() throws -> [UInt8] {
            channel.embeddedEventLoop.run()
            var out: [UInt8] = []
            while let b = try channel.readOutbound(as: ByteBuffer.self) { out += b.readableBytesView }
            return out
        }

        func deliver(_ bytes: [UInt8]) {
            guard channel.isActive else { return }
            _ = try? channel.writeInbound(channel.allocator.buffer(bytes: bytes))
        }

        /// The reason of the ERROR frame this end wrote, if it wrote one.
        func refusal(in bytes: [UInt8]) -> String? {
            var at = 0
            while let (frame, next) = try? FrameReader.frame(in: bytes, at: at, limit: Wire.maxFrame) {
                if frame.known == .error { var r = ByteReader(frame.payload); return try? r.string() }
                at = next
            }
            return nil
        }
    }

    /// Carries bytes both ways until neither end has more to say; what each wrote, in order.
    @discardableResult
    func converse(_ a: End, _ b: End) throws -> (a: [UInt8], b: [UInt8]) {
        var all: (a: [UInt8], b: [UInt8]) = ([], [])
        for _ in 0..<10 {
            let fromA = try a.written(), fromB = try b.written()
            if fromA.isEmpty && fromB.isEmpty { break }
            all.a += fromA
            all.b += fromB
            b.deliver(fromA)
            a.deliver(fromB)
        }
        return all
    }

    @Test func twoEndsWithTheKeyAuthenticateAndThenEveryFrameIsSealedAndArrives() throws {
        let a = try End(Endpoint("a"), outbound: .control), b = try End(Endpoint("b"), outbound: nil)
        try converse(a, b)
        #expect(a.endpoint.authenticatedPeers == ["b"] && b.endpoint.authenticatedPeers == ["a"])
        // The handshake has left both pipelines.
        #expect(throws: (any Error).self) { try a.channel.pipeline.syncOperations.handler(type: HandshakeHandler.self) }
        a.connection.send(Wire.Frame(.directory, [1, 2, 3]))
        let sent = try a.written()
        #expect(sent[5] == Wire.FrameType.sealed.rawValue, "a frame left unsealed")
        #expect(!(0..<sent.count - 2).contains { sent[$0..<$0 + 3] == [1, 2, 3] }, "the payload in clear")
        b.deliver(sent)
        #expect(b.endpoint.frames.map(\.type) == [Wire.FrameType.directory.rawValue])
        #expect(b.endpoint.frames.first?.payload == [1, 2, 3])
        _ = try? a.channel.close().wait()
        #expect(a.endpoint.closedPeers == ["b"])
    }

    @Test func aPeerWithAnotherKeyIsRefusedAndNothingReachesTheNode() throws {
        let a = try End(Endpoint("a", key: ClusterKey(Array(repeating: 9, count: 32))), outbound: .control)
        let b = try End(Endpoint("b"), outbound: nil)
        let said = try converse(a, b)
        #expect(b.refusal(in: said.b)?.contains("authentication failed") == true)
        #expect(a.endpoint.authenticatedPeers.isEmpty && b.endpoint.authenticatedPeers.isEmpty)
        #expect(!b.channel.isActive)
        // A connection that never authenticated is not one the node knew: no close reaches it.
        #expect(a.endpoint.closedPeers.isEmpty && b.endpoint.closedPeers.isEmpty)
    }

    @Test func aConnectionOpenedForOneRoleRefusesAPeerThatSaysAnother() throws {
        let a = try End(Endpoint("a"), outbound: .control), b = try End(Endpoint("b"), outbound: .data)
        let said = try converse(a, b)
        #expect(a.refusal(in: said.a) == "role mismatch" || b.refusal(in: said.b) == "role mismatch")
        #expect(a.endpoint.authenticatedPeers.isEmpty && b.endpoint.authenticatedPeers.isEmpty)
    }

    @Test func framesBeforeAuthenticationAreRefusedUnread() throws {
        let b = try End(Endpoint("b"), outbound: nil)
        for type in [Wire.FrameType.request, .reply, .directory, .swim, .auth] {
            let b = try End(Endpoint("b"), outbound: nil)
            b.deliver(Wire.Frame(type, [0, 1, 2]).encoded())
            let reason = b.refusal(in: try b.written())
            #expect(reason?.contains("before") == true, "\(type): \(reason ?? "not refused")")
            #expect(b.endpoint.frames.isEmpty && !b.channel.isActive)
        }
        // A length past a handshake frame's (4,096 bytes) is refused from its four bytes, before
        // the frame is read.
        let big = UInt32(Wire.maxHandshakeFrame + 1)
        b.deliver([UInt8(big >> 24), UInt8(truncatingIfNeeded: big >> 16), UInt8(truncatingIfNeeded: big >> 8), UInt8(truncatingIfNeeded: big), Wire.version])
        #expect(b.refusal(in: try b.written()) != nil)
        #expect(!b.channel.isActive)
    }

    @Test func onceAuthenticatedAFrameLargerThanAHandshakesArrives() throws {
        let a = try End(Endpoint("a"), outbound: .control), b = try End(Endpoint("b"), outbound: nil)
        try converse(a, b)
        let payload = [UInt8](repeating: 0x5a, count: 3 * Wire.maxHandshakeFrame)
        a.connection.send(Wire.Frame(.directory, payload))
        b.deliver(try a.written())
        #expect(b.endpoint.frames.map(\.payload) == [payload] && b.channel.isActive)
    }

    @Test func theHandshakeSplitAtEveryByteStillCompletes() throws {
        // What a wrote first (its HELLO), cut in two at every byte: frames are whole only when all
        // their bytes have come, however the reads fall.
        let probe = try End(Endpoint("a"), outbound: .control)
        let hello = try probe.written()
        for cut in 1..<hello.count {
            let b = try End(Endpoint("b"), outbound: nil)
            b.deliver(Array(hello[..<cut]))
            #expect(try b.written().isEmpty, "b answered a HELLO cut at \(cut)")
            b.deliver(Array(hello[cut...]))
            // b took the HELLO whole: it answers with its own HELLO and its AUTH.
            let answer = try b.written()
            var types: [UInt8] = [], at = 0
            while let (frame, next) = try? FrameReader.frame(in: answer, at: at, limit: Wire.maxFrame) { types.append(frame.type); at = next }
            #expect(types == [Wire.FrameType.hello.rawValue, Wire.FrameType.auth.rawValue] && b.channel.isActive, "cut at \(cut)")
        }
    }

    @Test func aSealedFrameReplayedTruncatedOrChangedEndsTheConnection() throws {
        func authenticated() throws -> (End, End) {
            let a = try End(Endpoint("a"), outbound: .control), b = try End(Endpoint("b"), outbound: nil)
            try converse(a, b)
            return (a, b)
        }
        let (a, b) = try authenticated()
        a.connection.send(Wire.Frame(.directory, [1]))
        let record = try a.written()
        b.deliver(record)
        #expect(b.endpoint.frames.count == 1)
        // The same record again: its nonce is spent.
        b.deliver(record)
        // Its ERROR frame goes sealed, as everything after the handshake does.
        let error = try b.written()
        #expect(error.count > 6 && error[5] == Wire.FrameType.sealed.rawValue)
        #expect(!b.channel.isActive && b.endpoint.frames.count == 1)

        // Changed at any byte of the record, or cut short with a length that says so: refused,
        // and nothing of it reaches the node.
        for at in 0..<record.count {
            let (_, b) = try authenticated()
            var changed = record
            changed[at] ^= 0x01
            b.deliver(changed)
            #expect(b.endpoint.frames.isEmpty, "a record changed at byte \(at) was taken")
            // A changed length makes the record longer (the decoder waits for the rest) or cuts
            // it (it does not open); any other change fails to open at once.
            if at >= 4 { #expect(!b.channel.isActive, "a record changed at byte \(at) left the connection open") }
        }
        for cut in 7..<record.count {
            let (_, b) = try authenticated()
            var short = Array(record[..<cut])
            let length = UInt32(cut - 4)
            short[0..<4] = [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
            b.deliver(short)
            #expect(b.endpoint.frames.isEmpty && !b.channel.isActive, "a record cut to \(cut) bytes was taken")
        }
    }

    @Test func aPeerThatDoesNotAuthenticateInTimeIsCutOffOnTheTestsClock() throws {
        let b = try End(Endpoint("b"), outbound: nil)
        b.channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(b.channel.isActive)
        b.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(b.refusal(in: try b.written())?.contains("handshake timeout") == true)
        #expect(!b.channel.isActive)
    }
}
