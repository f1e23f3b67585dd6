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

    /// The AUTH MAC this node sends: HMAC-SHA256 under the key in use over both HELLOs as they
    /// were sent — role, names, fresh nonces, and what each side says of itself (listen address,
    /// data planes, boot epoch), so none of it can be changed on the way.
    func mac(fromHello: [UInt8], toHello: [UInt8]) -> [UInt8] {
        Self.mac(keys[0], fromHello: fromHello, toHello: toHello)
    }

    /// Which key of the ring `mac`, an AUTH MAC, was made with; nil if none. Every key is tried
    /// and compared in constant time, so the time taken says nothing of which matched.
    func keyIndex(accepting mac: [UInt8], fromHello: [UInt8], toHello: [UInt8]) -> Int? {
        var found: Int?
        for (i, k) in keys.enumerated() where constantTimeEqual(mac, Self.mac(k, fromHello: fromHello, toHello: toHello)) {
            found = found ?? i
        }
        return found
    }

    /// The ciphers of a connection whose handshake just succeeded (docs/security.md). Frames this
    /// node sends are sealed under a key derived from the key its own AUTH was made with (the one
    /// in use); frames it receives, from the key the peer's AUTH was made with (`peerKey`, its
    /// index in the ring). Each direction's key is bound to both nonces, both names and the role:
    /// no two connections, and no two directions of one, share a key.
    func ciphers(role: Handshake.Role, myNonce: [UInt8], theirNonce: [UInt8], me: String, peer: String, peerKey: Int) -> Session {
        Session(sending: FrameCipher(key: Self.frameKey(keys[0], role: role, fromNonce: myNonce, toNonce: theirNonce, from: me, to: peer)),
                receiving: FrameCipher(key: Self.frameKey(keys[peerKey], role: role, fromNonce: theirNonce, toNonce: myNonce, from: peer, to: me)))
    }

    private static func frameKey(_ key: [UInt8], role: Handshake.Role, fromNonce: [UInt8], toNonce: [UInt8], from: String, to: String) -> SymmetricKey {
        var info = ByteWriter()
        info.string("decos-frames-v1")
        info.byte(role.rawValue)
        info.string(from)
        info.string(to)
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), salt: fromNonce + toNonce, info: info.bytes, outputByteCount: 32)
    }

    private static func mac(_ key: [UInt8], fromHello: [UInt8], toHello: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.string("decos-auth-v2")
        w.data(fromHello)
        w.data(toHello)
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
