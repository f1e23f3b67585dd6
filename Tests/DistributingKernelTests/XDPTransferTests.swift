@testable import DistributingKernel
import Testing
import TestKit

/// The AF_XDP plane's reliability, without a network: a sender's window and a receiver's
/// coverage exchanging chunks and ACKs over a simulated link that loses, at random, what the
/// test says, on a simulated clock.
@Suite(.bounded, .computeThread) struct XDPTransferTests {
    /// A deterministic generator (SplitMix64): the same losses on every run.
    struct Dice: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Runs one transfer of `total` chunks: each step the sender sends what its window allows,
    /// the link delivers (losing `loss`% each way) after `delay` µs, the receiver ACKs each
    /// batch. Returns the steps taken and the chunks sent again; fails past `limit` steps.
    func transfer(total: Int, loss: Int, seed: UInt64 = 1, limit: Int = 100_000) -> (steps: Int, resent: Int, coverage: XDPCoverage, cwnd: Double)? {
        var window = XDPWindow(total: total)
        var coverage = XDPCoverage(total: total)
        var dice = Dice(state: seed)
        var toReceiver: [(at: UInt64, chunk: Int)] = [], toSender: [(at: UInt64, ack: XDPWire.Ack)] = []
        let delay: UInt64 = 200, step: UInt64 = 100
        var now: UInt64 = 0
        for steps in 0..<limit {
            now += step
            _ = window.expire(now: now)
            for c in window.take(now: now, max: 64) where Int.random(in: 0..<100, using: &dice) >= loss {
                toReceiver.append((now + delay, c))
            }
            let arrived = toReceiver.filter { $0.at <= now }
            toReceiver.removeAll { $0.at <= now }
            if !arrived.isEmpty {
                for a in arrived { _ = coverage.land(a.chunk) }
                if Int.random(in: 0..<100, using: &dice) >= loss { toSender.append((now + delay, coverage.ack())) }
            }
            for a in toSender where a.at <= now { window.ack(cumulative: a.ack.cumulative, sack: a.ack.sack, now: now) }
            toSender.removeAll { $0.at <= now }
            if window.done { return (steps, window.retransmitted, coverage, window.cwnd) }
        }
        return nil
    }

    @Test func withoutLossEveryChunkGoesOnceAndTheWindowGrows() throws {
        let r = try #require(transfer(total: 20_000, loss: 0))
        #expect(r.coverage.whole)
        #expect(r.resent == 0)
        #expect(r.cwnd > XDPWindow.initialWindow, "the window stayed at \(r.cwnd) chunks")
    }

    @Test func underLossEveryChunkArrivesAndOnlyLostOnesAreSentAgain() throws {
        for seed in 1...5 as ClosedRange<UInt64> {
            let r = try #require(transfer(total: 20_000, loss: 5, seed: seed), "seed \(seed) did not finish")
            #expect(r.coverage.whole)
            #expect(r.resent > 0)
            // Lost chunks (about 5%, plus those whose ACKs were lost and timed out) — not go-back-N's whole windows.
            #expect(r.resent < 20_000 / 4, "seed \(seed): \(r.resent) chunks sent again")
            print("XDPTransferTests: seed \(seed), 5% loss: \(r.steps) steps, \(r.resent) chunks sent again")
        }
    }

    @Test func anAckForChunksNeverSentIsIgnored() {
        var window = XDPWindow(total: 100)
        _ = window.take(now: 0, max: 10)
        let beyond = window.ack(cumulative: 50, sack: [], now: 1)
        #expect(!beyond && window.acked == 0)
        let sent = window.ack(cumulative: 10, sack: [], now: 1)
        #expect(sent)
        #expect(window.acked == 10)
    }

    @Test func aTimeoutSendsTheUnacknowledgedAgainAndBacksOff() {
        var window = XDPWindow(total: 100)
        let first = window.take(now: 0, max: 8)
        #expect(first == Array(0..<8))
        let early = window.expire(now: XDPWindow.initialTimeout - 1), due = window.expire(now: XDPWindow.initialTimeout)
        #expect(!early && due)
        #expect(window.timeout == 2 * XDPWindow.initialTimeout)
        #expect(window.take(now: XDPWindow.initialTimeout, max: 64) == Array(0..<4), "the window collapses to four chunks, oldest first")
    }

    @Test func coverageCountsAChunkOnceAndSaysWhatIsMissing() {
        var c = XDPCoverage(total: 200)
        let landed = [c.land(0), c.land(2), c.land(2)]
        #expect(landed == [true, true, false])
        #expect(c.count == 2 && c.cumulative == 1)
        #expect(c.ack() == XDPWire.Ack(cumulative: 1, sack: [1]))  // chunk 2 is bit 0 past the missing chunk 1
        let one = c.land(1)
        #expect(one)
        #expect(c.cumulative == 3 && c.ack().sack.isEmpty)
    }

    @Test func wireDecodersRefuseWhatIsMalformed() throws {
        let d = XDPWire.Descriptor(mac: [2, 0, 0, 0, 0, 1], queue: 3, transfer: 9, key: [UInt8](repeating: 7, count: 32))
        #expect(try XDPWire.descriptor(XDPWire.encode(d)) == d)
        #expect(throws: (any Error).self) { try XDPWire.descriptor(XDPWire.encode(d) + [0]) }
        var multicast = d
        multicast.mac = [1, 0, 0, 0, 0, 1]
        #expect(throws: (any Error).self) { try XDPWire.descriptor(XDPWire.encode(multicast)) }
        let p = XDPWire.Pull(length: 1 << 30, chunk: 1464, node: "n1")
        #expect(try XDPWire.pull(XDPWire.encode(p)) == p)
        #expect(throws: (any Error).self) { try XDPWire.pull(XDPWire.encode(XDPWire.Pull(length: 1, chunk: 64, node: "n1"))) }
        #expect(throws: (any Error).self) { try XDPWire.ack([0, 0, 0, 0, 0, 0, 0, 0, 9]) }  // nine SACK words promised
        let a = XDPWire.Ack(cumulative: 5, sack: [3, 0, 1])
        #expect(try XDPWire.ack(XDPWire.encode(a)) == a)
    }
}

/// A REFUSE ends an import: on a sealed plane only one sealed under the transfer's key (which
/// only the sender and the receiver hold) may; any host on the segment can send the rest.
struct XDPRefusalTests {
    /// A REFUSE frame of transfer 9 saying `reason`, sealed under `key` when given, else with a tag of zeros.
    func frame(_ reason: String, sealedUnder key: [UInt8]?, tagged: Bool = true) -> (XDPWire.Header, [UInt8]) {
        let body = XDPWire.encode(refusal: reason)
        let h = XDPWire.Header(kind: .refuse, transfer: 9, sequence: 1, length: body.count)
        var frame = [UInt8](repeating: 0, count: XDPWire.ethernetBytes + XDPWire.headerBytes + body.count + (tagged ? XDPWire.tagBytes : 0))
        frame.withUnsafeMutableBytes { f in
            XDPWire.writeHeaders(f, to: [2, 0, 0, 0, 0, 1], from: [2, 0, 0, 0, 0, 2], h)
            UnsafeMutableRawBufferPointer(rebasing: f[(XDPWire.ethernetBytes + XDPWire.headerBytes)...]).copyBytes(from: body)
            if let key { XDPCipher(key: key)!.seal(f, h) }
        }
        return (h, frame)
    }

    func refusal(_ f: (XDPWire.Header, [UInt8]), sealed: Bool, key: [UInt8]?) -> String? {
        var bytes = f.1
        return bytes.withUnsafeMutableBytes { XDPPlane.refusal(f.0, UnsafeRawBufferPointer($0), sealed: sealed, cipher: key.flatMap(XDPCipher.init)) }
    }

    @Test func anUnauthenticatedRefusalOnASealedPlaneIsIgnored() {
        let key = XDPCipher.key(), other = XDPCipher.key()
        #expect(refusal(frame("no such transfer", sealedUnder: key), sealed: true, key: key) == "no such transfer")
        #expect(refusal(frame("forged", sealedUnder: nil), sealed: true, key: key) == nil)
        #expect(refusal(frame("forged", sealedUnder: other), sealed: true, key: key) == nil)
        // Unsealed, no frame is authenticated: a refusal is taken as it comes.
        #expect(refusal(frame("too large", sealedUnder: nil, tagged: false), sealed: false, key: nil) == "too large")
    }
}
