@testable import DistributingKernel
import Dispatch
import NIOCore
import Synchronization
import Testing
import TestKit

/// Membership's shell on its own loop: what would stop the failure detector's clock stays off it.
@Suite(.bounded) struct MembershipShellTests {
    /// A member known by a host name whose lookup waits (a DNS server that does not answer): the
    /// message goes on the control connection meanwhile, and the lookup ends off the loop.
    @Test func aNameThatTakesLongToLookUpDoesNotHoldTheFailureDetectorsLoop() async throws {
        let a = try await bootNode("a")
        let network = try #require(a.network)
        let lookup = SlowLookup()
        try await network.withMembership { $0.lookUpHost = lookup.answer }
        func send() async throws -> Bool {
            try await MembershipDatagrams.loop.submit { network.sendDatagram([1, 2, 3], to: "b", address: "b.slow.invalid:7946") }.get()
        }
        // Looked up on the loop, the send would return only once the lookup had ended.
        #expect(try await send() == false, "a member whose name is being looked up is reached another way")
        #expect(!lookup.ended, "the send waited for the lookup")
        try await until("the lookup has begun") { lookup.begun }
        lookup.release()
        try await until("the name is resolved and datagrams go to it") { try await send() }
        #expect(lookup.calls == 1, "one lookup per name, however many messages went meanwhile")
        await network.stop()
    }
}

/// A host lookup that waits until the test releases it (at most 30 s, so a regression fails the
/// test rather than hanging it).
final class SlowLookup: Sendable {
    private let gate = DispatchSemaphore(value: 0)
    private let state = Mutex<(calls: Int, ended: Bool)>((0, false))
    var begun: Bool { state.withLock { $0.calls > 0 } }
    var ended: Bool { state.withLock { $0.ended } }
    var calls: Int { state.withLock { $0.calls } }

    func release() { gate.signal() }

    @Sendable func answer(_ host: String, _ port: Int) -> SocketAddress? {
        state.withLock { $0.calls += 1 }
        _ = gate.wait(timeout: .now() + 30)
        state.withLock { $0.ended = true }
        return try? SocketAddress(ipAddress: "127.0.0.1", port: port)
    }
}
