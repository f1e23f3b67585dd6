@testable import Decos
@testable import DistributingKernel
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestKit

/// Peers that die at the wrong moment: the surviving node answers every caller and goes on.
@Suite(.bounded, .serialized) struct PeerFailureTests {
    @Test func aPeerDeclaredDeadWhileBeingConnectedToFaultsItsCallersAndTheNodeGoesOn() async throws {
        let a = try await bootNode("a")
        // A listener that accepts connections and never says a word, so a handshake with it
        // waits until the handshake timeout.
        let (listener, port) = try #require(listenOnLoopback())
        defer { close(listener) }
        // A member that gossips itself alive, at an address whose TCP side accepts but never
        // handshakes and whose UDP side answers no probe: it is declared dead while a connection
        // to it is still being opened.
        announce(Membership.Member(name: "mute", address: "127.0.0.1:\(port)", incarnation: 1, status: .alive), toPort: a.clusterAddress!.port!)
        try await until("the condition awaited here") { a.network?.members.contains { $0.name == "mute" } ?? false }
        async let first = a.kernel.send(Message(.get, to: "decos://mute/counter"), as: .system)
        async let second = a.kernel.send(Message(.get, to: "decos://mute/counter"), as: .system)
        // The opener force-unwrapped the link entry that the death removed (a crash), and the
        // second caller, waiting on that entry, was never answered (a hang).
        let (r1, r2) = await (first, second)
        #expect(r1.fault?.subcode?.local == "Unreachable")
        #expect(r2.fault?.subcode?.local == "Unreachable")
        #expect(a.network?.members.first { $0.name == "mute" }?.status == .dead)
        // And the node still serves.
        let local = await a.kernel.send(Message(.get, to: "/counter"), as: .system)
        #expect(local.fault == nil)
        await a.network?.stop()
    }
}
