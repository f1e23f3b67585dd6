import Decos
@testable import DistributingKernel
import Foundation
import Testing
import TestKit

/// Membership datagrams are encrypted and authenticated; the key can be rotated without downtime.
@Suite(.bounded, .serialized) struct ClusterKeyTests {
    let key = ClusterKey(Array("cluster-key-for-the-datagram-tests".utf8))
    let payload = Wire.encode(.gossip(members: [Membership.Member(name: "secret-node-name", address: "10.1.2.3:7946", incarnation: 4, status: .alive)]),
                              from: Membership.Member(name: "sender-node-name", address: "10.1.2.4:7946", incarnation: 1, status: .alive))

    @Test func aHostOnThePathReadsNothingOfADatagram() {
        let d = key.seal(payload)
        // The names and addresses of the members were readable when datagrams were only MACed.
        #expect(!d.contains(Array("secret-node-name".utf8)))
        #expect(!d.contains(Array("10.1.2.3".utf8)))
        #expect(key.open(d) == payload)
        // A fresh nonce each time: the same payload never looks the same twice.
        #expect(key.seal(payload) != d)
    }

    @Test func aHostOnThePathChangesNothingOfADatagram() {
        let d = key.seal(payload)
        for i in [0, 1, 2, 13, 14, d.count / 2, d.count - 1] {
            var changed = d
            changed[i] ^= 0x01
            #expect(key.open(changed) == nil, "byte \(i) changed")
        }
        #expect(key.open(Array(d.prefix(29))) == nil)
        #expect(ClusterKey(Array("another-key-of-enough-length".utf8)).open(d) == nil)
    }

    @Test func aKeyFileIsARingWhoseFirstLineIsInUse() throws {
        let ring = try #require(ClusterKey(file: Array("  new-key-0123456789abcdef \n\nold-key-0123456789abcdef\n".utf8)))
        #expect(ring.keys.map { String(decoding: $0, as: UTF8.self) } == ["new-key-0123456789abcdef", "old-key-0123456789abcdef"])
        #expect(ClusterKey(file: Array("long-enough-key-0123456789\nshort\n".utf8)) == nil)
        #expect(ClusterKey(file: Array("\n \n".utf8)) == nil)
        // Sent with the first, accepted under either.
        let old = ClusterKey(Array("old-key-0123456789abcdef".utf8))
        #expect(ring.open(old.seal(payload)) == payload)
        #expect(old.open(ring.seal(payload)) == nil)
    }

    @Test func nodesMidRotationFormOneCluster() async throws {
        // Rotation's middle step: a still sends with the old key and accepts the new; b already
        // sends with the new one and accepts the old. Handshakes, datagrams and calls all work.
        let dir = NSTemporaryDirectory()
        let aKey = dir + "decos-ring-a-\(getpid()).key", bKey = dir + "decos-ring-b-\(getpid()).key"
        try "old-key-0123456789abcdef\nnew-key-0123456789abcdef\n".write(toFile: aKey, atomically: true, encoding: .utf8)
        try "new-key-0123456789abcdef\nold-key-0123456789abcdef\n".write(toFile: bKey, atomically: true, encoding: .utf8)
        let a = try await bootNode("a", key: aKey)
        let b = try await bootNode("b", seed: address(a), key: bKey)
        try await waitUntil(a, lists: "decos://b/counter")
        try await waitUntil(b, lists: "decos://a/counter")
        _ = try await a.kernel.call(.get, "decos://b/counter")
        _ = try await b.kernel.call(.get, "decos://a/counter")
        for n in [a, b] { await n.network?.stop() }
    }
}
