@testable import DistributingKernel
import ServiceKernel
import Testing
import TestKit

/// The bookkeeping of offers every plane shares, alone.
@Suite(.bounded) struct OfferLedgerTests {
    func offering(_ peer: String, bytes: Int = 10, call: UInt64 = 1, expires: UInt64? = nil) -> Offering {
        Offering(buffer: DataBuffer([UInt8](repeating: 1, count: bytes)), call: call, peer: peer, expires: expires)
    }

    @Test func anOfferIsItsPeersAloneAndItsNumberIsNeverReused() {
        var ledger = OfferLedger<Int>()
        let a = ledger.offer(offering("b"), 7)
        #expect(ledger.offered(a, to: "b")?.extra == 7)
        #expect(ledger.offered(a, to: "mallory") == nil)
        #expect(ledger.withdraw([a]).map(\.transfer) == [a])
        #expect(ledger.withdraw([a]).isEmpty, "withdrawn twice")
        let next = ledger.offer(offering("b"), 8)
        #expect(next != a && ledger.offered(a, to: "b") == nil)
    }

    @Test func onlyOffersWithATimeLapseAndOnlyTheyCountAgainstAPeer() {
        var ledger = OfferLedger<Void>()
        let call = ledger.offer(offering("b", bytes: 100), ())
        let reply = ledger.offer(offering("b", bytes: 30, call: 0, expires: 500), ())
        _ = ledger.offer(offering("c", bytes: 50, call: 0, expires: 900), ())
        #expect(ledger.lapsingBytes(to: "b") == 30 && ledger.lapsingBytes(to: "c") == 50)
        #expect(ledger.withdrawLapsed(at: 499).isEmpty)
        #expect(ledger.withdrawLapsed(at: 500).map(\.transfer) == [reply])
        #expect(ledger.lapsingBytes(to: "b") == 0 && ledger.offered(call, to: "b") != nil)
    }

    @Test func aPeersOffersAreFoundAndCountedByPeer() {
        var ledger = OfferLedger<Void>()
        let one = ledger.offer(offering("b"), ()), two = ledger.offer(offering("b"), ())
        _ = ledger.offer(offering("c"), ())
        #expect(Set(ledger.transfers(to: "b")) == [one, two])
        var traffic: [String: PeerTraffic] = [:]
        ledger.countOffers(into: &traffic, plane: .tcp)
        #expect(traffic["b"]?.offered == 2 && traffic["c"]?.offered == 1 && traffic["b"]?.plane == "tcp")
    }
}
