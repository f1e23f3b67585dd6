import Crypto
import Infoset

/// Mutual authentication of two nodes holding the same cluster key (docs/wire.md).
///
/// Each side sends HELLO (role, node name, listen address, a fresh 32-byte nonce), then AUTH: an
/// HMAC-SHA256 under the cluster key over both nonces and both names (`ClusterKey.mac`). A side
/// that cannot produce the MAC never gets past the handshake: none of its other frames reaches the
/// dispatcher.
public enum Handshake {
    public enum Role: UInt8, Sendable {
        case control = 0
        case data = 1
    }

    public struct Hello: Sendable, Hashable {
        public var role: Role
        public var node: String
        public var address: String
        public var nonce: [UInt8]

        public func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.byte(role.rawValue)
            w.string(node)
            w.string(address)
            w.data(nonce)
            return w.bytes
        }

        public static func decode(_ bytes: [UInt8]) throws(ByteReader.Failure) -> Hello {
            var r = ByteReader(bytes)
            guard let role = Role(rawValue: try r.byte()) else { throw r.fail("unknown role") }
            let hello = Hello(role: role, node: try r.string(), address: try r.string(), nonce: try r.data())
            guard hello.nonce.count == 32 else { throw r.fail("nonce must be 32 bytes") }
            return hello
        }
    }

    public static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}
