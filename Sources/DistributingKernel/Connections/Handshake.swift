import Crypto
import Infoset

/// Mutual authentication of two nodes holding the same cluster key (docs/wire.md).
///
/// Each side sends HELLO (role, node name, listen address, a fresh 32-byte nonce, whether it seals
/// frames, its data planes, its boot epoch), then AUTH: an HMAC-SHA256 under the cluster key over
/// both HELLOs as sent (`ClusterKey.mac`). A side that cannot produce the MAC never gets past the handshake: none of
/// its other frames reaches the dispatcher. After AUTH, each side seals every frame it sends
/// (`FrameCipher`) unless the cluster runs with encryption off — which both sides must agree on.
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
        /// Whether the sender seals its frames after AUTH (ClusterConfig.encrypt).
        public var sealed = true
        /// The data planes the sender takes buffers on, a bit each (`PlaneKind`).
        public var planes: UInt8 = PlaneKind.tcp.rawValue
        /// The sender's boot epoch (`Epoch`): a peer that knew an older one knows it restarted.
        public var epoch: UInt64 = 0

        public init(role: Role, node: String, address: String, nonce: [UInt8], sealed: Bool = true, planes: UInt8 = PlaneKind.tcp.rawValue,
                    epoch: UInt64 = 0) {
            self.role = role
            self.node = node
            self.address = address
            self.nonce = nonce
            self.sealed = sealed
            self.planes = planes
            self.epoch = epoch
        }

        public func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.byte(role.rawValue)
            w.string(node)
            w.string(address)
            w.data(nonce)
            w.byte(sealed ? 1 : 0)  // flags: bit 0 sealed; other bits are for later versions and ignored
            w.byte(planes)
            w.u64(epoch)
            return w.bytes
        }

        public static func decode(_ bytes: [UInt8]) throws(ByteReader.Failure) -> Hello {
            var r = ByteReader(bytes)
            guard let role = Role(rawValue: try r.byte()) else { throw r.fail("unknown role") }
            var hello = Hello(role: role, node: try r.string(), address: try r.string(), nonce: try r.data())
            guard hello.nonce.count == 32 else { throw r.fail("nonce must be 32 bytes") }
            hello.sealed = try r.byte() & 1 == 1
            hello.planes = try r.byte()
            hello.epoch = try r.u64()
            return hello
        }
    }

    public static func nonce() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// Why two nodes that disagree on sealing frames cannot talk; nil when they agree.
    static func sealingProblem(mine: Bool, theirs: Hello) -> String? {
        guard mine != theirs.sealed else { return nil }
        return "this node \(mine ? "encrypts" : "does not encrypt") frames between nodes and \(theirs.node) \(theirs.sealed ? "does" : "does not"): set encryption= on <Cluster> alike on every node"
    }
}
