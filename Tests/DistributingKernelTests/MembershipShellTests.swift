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
        let lookup = SlowLookup(answer: "127.0.0.1")
        // The name stands for node a itself: the datagrams that go once it resolves reach no one else.
        let address = "b.slow.invalid:\(try #require(a.clusterAddress?.port))"
        do {
            try await network.withMembership { $0.lookUpHost = lookup.answer }
            // Looked up on the loop, the send would return only once the lookup had ended.
            #expect(try await send(on: network, to: address) == false, "a member whose name is being looked up is reached another way")
            #expect(!lookup.ended, "the send waited for the lookup")
            try await until("the lookup has begun") { lookup.calls == 1 }
            lookup.release()
            try await until("the name is resolved and datagrams go to it") { try await send(on: network, to: address) }
            #expect(lookup.calls == 1, "one lookup per name, however many messages went meanwhile")
        } catch {
            lookup.release()
            await network.stop()
            throw error
        }
        await network.stop()
    }

    /// A name that does not resolve is not looked up again at every probe, only once its retry
    /// time has come.
    @Test func aNameThatDoesNotResolveIsLookedUpAgainOnlyAfterAWhile() async throws {
        let a = try await bootNode("a")
        let network = try #require(a.network)
        let lookup = SlowLookup(answer: nil)
        lookup.release()
        do {
            try await network.withMembership { $0.lookUpHost = lookup.answer; $0.retryLookupAfter = .max / 2 }
            #expect(try await send(on: network, to: "nowhere.invalid:7946") == false)
            try await until("the lookup has failed") { lookup.ended }
            try await until("the failure is noted") { try await MembershipDatagrams.loop.submit { network.shell.value.unresolved.count == 1 }.get() }
            for _ in 0..<5 { #expect(try await send(on: network, to: "nowhere.invalid:7946") == false) }
            #expect(lookup.calls == 1, "looked up again before its retry time")
            // Once the retry time has come, the next message looks the name up again.
            try await network.withMembership { $0.retryLookupAfter = 0 }
            _ = try await send(on: network, to: "nowhere.invalid:7946")
            try await until("the name is looked up again") { lookup.calls == 2 }
        } catch {
            await network.stop()
            throw error
        }
        await network.stop()
    }

    private func send(on network: NetworkManager, to address: String) async throws -> Bool {
        try await MembershipDatagrams.loop.submit { network.sendDatagram([1, 2, 3], to: "b", address: address) }.get()
    }
}

/// A host lookup that waits until the test releases it (at most 30 s, so a regression fails the
/// test rather than hanging it), then answers `answer` (nil: the name does not resolve).
final class SlowLookup: Sendable {
    private let gate = DispatchSemaphore(value: 0)
    private let state = Mutex<(calls: Int, ended: Bool)>((0, false))
    private let address: String?
    var ended: Bool { state.withLock { $0.ended } }
    var calls: Int { state.withLock { $0.calls } }

    init(answer: String?) { address = answer }

    /// Lets every lookup, waiting or to come, through.
    func release() { for _ in 0..<64 { gate.signal() } }

    @Sendable func answer(_ host: String, _ port: Int) -> SocketAddress? {
        state.withLock { $0.calls += 1 }
        _ = gate.wait(timeout: .now() + 30)
        state.withLock { $0.ended = true }
        return address.flatMap { try? SocketAddress(ipAddress: $0, port: port) }
    }
}
