import Crypto
import Infoset
import ServiceKernel

/// The cluster key, as a keyring: every key in it is accepted, the first is the one this node
/// uses. Rotating without downtime, as Consul's gossip keyring does: add the new key as the second
/// line of every node's key file (restarting each in turn), then make it the first line on every
/// node, then remove the old one (docs/security.md).
public struct ClusterKey: Sendable {
    /// The keys, the one used first; each at least 16 bytes.
    let keys: [[UInt8]]
    /// Per key: the key membership datagrams are encrypted under, derived from it.
    private let datagramKeys: [SymmetricKey]

    public init(_ bytes: [UInt8]) { self.init(ring: [bytes]) }

    public init(ring: [[UInt8]]) {
        keys = ring
        datagramKeys = ring.map {
            HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: $0), info: Array("decos-swim-v3".utf8), outputByteCount: 32)
        }
    }

    /// Reads a key file: each non-empty line, with surrounding whitespace trimmed, is a key of at
    /// least 16 bytes; the first line is the key in use. Nil if any line is too short.
    public init?(file bytes: [UInt8]) {
        let isSpace: (UInt8) -> Bool = { $0 == 0x0D || $0 == 0x20 || $0 == 0x09 }
        var ring: [[UInt8]] = []
        for line in bytes.split(separator: 0x0A) {
            var b = line[...]
            while let l = b.last, isSpace(l) { b = b.dropLast() }
            while let f = b.first, isSpace(f) { b = b.dropFirst() }
            if b.isEmpty { continue }
            guard b.count >= 16 else { return nil }
            ring.append(Array(b))
        }
        guard !ring.isEmpty else { return nil }
        self.init(ring: ring)
    }

    // MARK: the handshake

    /// The AUTH MAC this node sends: HMAC-SHA256 under the key in use over the role, both nonces
    /// and both names.
    func mac(role: Handshake.Role, fromNonce: [UInt8], toNonce: [UInt8], from: String, to: String) -> [UInt8] {
        Self.mac(keys[0], role: role, fromNonce: fromNonce, toNonce: toNonce, from: from, to: to)
    }

    /// True when `mac` is the AUTH MAC under any key of the ring (compared in constant time).
    func accepts(_ mac: [UInt8], role: Handshake.Role, fromNonce: [UInt8], toNonce: [UInt8], from: String, to: String) -> Bool {
        var ok = false
        for k in keys { ok = constantTimeEqual(mac, Self.mac(k, role: role, fromNonce: fromNonce, toNonce: toNonce, from: from, to: to)) || ok }
        return ok
    }

    private static func mac(_ key: [UInt8], role: Handshake.Role, fromNonce: [UInt8], toNonce: [UInt8], from: String, to: String) -> [UInt8] {
        var w = ByteWriter()
        w.string("decos-auth-v1")
        w.byte(role.rawValue)
        w.data(fromNonce)
        w.data(toNonce)
        w.string(from)
        w.string(to)
        return Array(HMAC<SHA256>.authenticationCode(for: w.bytes, using: SymmetricKey(data: key)))
    }

    // MARK: membership datagrams

    /// A datagram: u8 version | u8 type (SWIM) | 12-byte nonce | the payload encrypted with
    /// ChaCha20-Poly1305 under the key in use | 16-byte tag over all of it. A host on the path
    /// reads nothing (who is in the cluster, where, in what state) and changes nothing.
    public func seal(_ payload: [UInt8]) -> [UInt8] {
        let header = [Wire.version, Wire.FrameType.swim.rawValue]
        // A random 96-bit nonce per datagram: with one key, collisions are negligible below 2^32 datagrams.
        let box = try! ChaChaPoly.seal(payload, using: datagramKeys[0], authenticating: header)  // sealing with a valid key does not fail
        return header + Array(box.combined)
    }

    /// The payload of a datagram sealed under any key of the ring; nil for anything else.
    func open(_ d: [UInt8]) -> [UInt8]? {
        guard d.count >= 2 + 12 + 16, d[0] == Wire.version, d[1] == Wire.FrameType.swim.rawValue,
              let box = try? ChaChaPoly.SealedBox(combined: d[2...]) else { return nil }
        for k in datagramKeys {
            if let payload = try? ChaChaPoly.open(box, using: k, authenticating: d[..<2]) { return Array(payload) }
        }
        return nil
    }
}
