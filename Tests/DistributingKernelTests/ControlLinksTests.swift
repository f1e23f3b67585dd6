@testable import DistributingKernel
import NIOCore
import NIOEmbedded
import Testing
import TestKit

/// The control connections' bookkeeping alone: who opens, who waits, what a dead peer leaves.
@Suite(.bounded) struct ControlLinksTests {
    func active() throws -> PeerConnection {
        let c = EmbeddedChannel()
        try c.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return PeerConnection(c)
    }

    @Test func oneCallerOpensAConnectionAndTheOthersWaitForIt() async throws {
        let links = ControlLinks()
        guard case .connect = links.step("b") else { Issue.record("the first caller was not told to connect"); return }
        guard case .wait = links.step("b") else { Issue.record("a second caller was told to connect too"); return }
        let waiting = Task { await links.wait(for: "b") }
        let channel = try active()
        // The waiter may not have queued yet: `opened` answers it then, or it finds the link open.
        links.opened("b", channel)
        #expect(await waiting.value === channel)
        guard case .ready(let c) = links.step("b"), c === channel else { Issue.record("the open connection was not reused"); return }
        #expect(links.open(to: "b") === channel)
    }

    @Test func aForgottenPeersWaitersGetNoConnectionAndItsHelloGoes() async throws {
        let links = ControlLinks()
        _ = links.step("b")
        links.heard("b", .init(address: "h:1", planes: 3))
        let waiting = Task { await links.wait(for: "b") }
        // Queued before or after the peer is forgotten, the waiter gets no connection.
        _ = links.forget("b")
        #expect(await waiting.value == nil)
        #expect(links.hello(of: "b") == nil && links.planes.isEmpty)
    }

    @Test func aDataConnectionsHelloKeepsThePlanesTheControlOneGave() throws {
        let links = ControlLinks()
        links.heard("b", .init(address: "h:1", planes: 5))
        links.heard("b", .init(address: "h:2", planes: nil))
        #expect(links.hello(of: "b")?.address == "h:2" && links.hello(of: "b")?.planes == 5)
    }

    @Test func onlyThisNodesOwnLinkClosingCounts() throws {
        let links = ControlLinks()
        let ours = try active(), theirs = try active()
        links.opened("b", ours)
        #expect(!links.closed(theirs, peer: "b"))
        #expect(links.closed(ours, peer: "b"))
        #expect(links.open(to: "b") == nil)
    }
}
