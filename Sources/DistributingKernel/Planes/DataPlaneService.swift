import Infoset
import ServiceKernel

/// `/os/dataplane`: the planes this node takes buffers on; per peer, what it offered and the plane
/// chosen for it; and per peer and plane, the bytes moved each way and the buffers offered, in
/// flight, received and failed. Empty on a node without a cluster.
///
/// And a self-test of the planes between two nodes: Submit
/// `<SendTest><To>decos://b/os/dataplane</To><Bytes>1073741824</Bytes></SendTest>` fills a buffer
/// of that many bytes in the pool, checksums it, and sends it to the other node's `/os/dataplane`
/// with `<Check>`, which checksums what arrived; the answer says whether it was intact, how long
/// the call took and how fast the bytes moved (the call's time less the receiver's checksumming).
/// `<Buffers>n</Buffers>` (1 to 256) splits the bytes into that many buffers of one message.
public actor DataPlaneService: Service {
    public static let contract = "urn:decos:os:dataplane"
    /// Submit takes a `<SendTest>` (from a client) or a `<Check>` (from the sending node): either body.
    public static let operations = [ServiceOperation(.get, returns: DataPlanes.self), ServiceOperation(.submit, takes: .any, returns: .any)]

    /// `<DataPlanes><Offered>tcp</Offered><Peer><Node>b</Node><Plane>tcp</Plane><BytesSent>…</Peer>…
    /// <Choice><Node>b</Node><Offers>tcp</Offers><Chosen>tcp</Chosen></Choice>…</DataPlanes>`
    public struct DataPlanes: Codable, Sendable {
        public var offered: String
        public var peer: [PeerTraffic]
        public var choice: [PlaneChoice]
    }

    public struct SendTest: Codable, Sendable {
        /// Another node's `/os/dataplane`.
        public var to: String
        public var bytes: Int
        /// How many buffers the bytes are split into (1 unless given).
        public var buffers: Int?
    }

    public struct Check: Codable, Sendable { public var checksum: String }

    public struct Checked: Codable, Sendable {
        public var bytes: Int
        public var checksum: String
        public var intact: Bool
        /// How long checksumming took: not part of moving the bytes.
        public var checkMilliseconds: Int
    }

    public struct SendTestResult: Codable, Sendable {
        public var bytes: Int
        public var intact: Bool
        /// The whole call: the offer out, the bytes moved, the checksum there, the answer back.
        public var milliseconds: Int
        /// The receiver's checksumming, within `milliseconds`.
        public var checkMilliseconds: Int
        /// Bytes (10^6) per second over the call less the checksumming.
        public var megabytesPerSecond: Double
    }

    private var context: ServiceContext?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { self.context = context }

    public func handle(_ request: Request) async throws -> Element? {
        guard let context else { throw Fault(.receiver, "NotStarted", "/os/dataplane has not started") }
        switch request.verb {
        case .get:
            let network = context.kernel.remote as? any NetworkFacts
            return try infoset(DataPlanes(offered: network?.offeredPlanes.joined(separator: " ") ?? "", peer: network?.dataTraffic ?? [],
                                          choice: network?.planeChoices ?? []))
        case .submit where request.body?.name.local == "SendTest":
            let t = try request.decode(SendTest.self)
            guard (1...(4 << 30)).contains(t.bytes) else { throw Fault.invalidBody("Bytes must be 1 to 4294967296") }
            let n = t.buffers ?? 1
            guard (1...256).contains(n), n <= t.bytes else { throw Fault.invalidBody("Buffers must be 1 to 256, and at most Bytes") }
            var sums: [UInt64] = []
            let buffers = try (0..<n).map { i in
                let count = t.bytes / n + (i < t.bytes % n ? 1 : 0)
                return BufferRef(id: n == 1 ? "data" : "data\(i)", buffer: try context.buffer(count: count) { sums.append(Pattern.fill($0)) })
            }
            let started = ContinuousClock.now
            let reply = try await context.call(.submit, t.to, body: try infoset(Check(checksum: Pattern.hex(Pattern.combine(sums)))),
                                               buffers: buffers, for: request)
            let elapsed = (ContinuousClock.now - started).inSeconds
            guard let reply, let checked = try? InfosetDecoder().decode(Checked.self, from: reply) else {
                throw Fault(.receiver, "UnexpectedReply", "\(t.to) did not answer <Check> with <Checked>")
            }
            let moving = max(elapsed - Double(checked.checkMilliseconds) / 1000, 1e-6)
            return try infoset(SendTestResult(bytes: checked.bytes, intact: checked.intact && checked.bytes == t.bytes,
                                              milliseconds: Int(elapsed * 1000), checkMilliseconds: checked.checkMilliseconds,
                                              megabytesPerSecond: (Double(t.bytes) / moving / 1e6 * 10).rounded() / 10))
        case .submit:
            let c = try request.decode(Check.self)
            let data = request.message.buffers
            guard !data.isEmpty else { throw Fault.invalidBody("<Check> needs the buffers to check") }
            let started = ContinuousClock.now
            let sum = Pattern.combine(data.map { ref in ref.buffer.withUnsafeBytes { Pattern.checksum($0) } })
            let took = Int((ContinuousClock.now - started).inMilliseconds)
            return try infoset(Checked(bytes: data.reduce(0) { $0 + $1.buffer.count }, checksum: Pattern.hex(sum), intact: Pattern.hex(sum) == c.checksum,
                                       checkMilliseconds: took))
        default:
            throw Fault.actionNotSupported(request.verb, "/os/dataplane")
        }
    }
}

/// The self-test's bytes: a xorshift stream, eight bytes at a time, and an FNV-1a checksum over
/// the same words (a byte changed, lost or moved changes it).
enum Pattern {
    /// Fills `bytes` and returns their checksum.
    static func fill(_ bytes: UnsafeMutableRawBufferPointer) -> UInt64 {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        let words = bytes.count / 8
        for i in 0..<words {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            bytes.storeBytes(of: x, toByteOffset: i * 8, as: UInt64.self)
        }
        for i in (words * 8)..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i) }
        return checksum(UnsafeRawBufferPointer(bytes))
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let words = bytes.count / 8
        for i in 0..<words { h = (h ^ bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x100_0000_01B3 }
        for i in (words * 8)..<bytes.count { h = (h ^ UInt64(bytes[i])) &* 0x100_0000_01B3 }
        return h ^ UInt64(bytes.count)
    }

    /// The checksum of several buffers, in order: one buffer's own, so a single buffer checks as before.
    static func combine(_ sums: [UInt64]) -> UInt64 {
        sums.count == 1 ? sums[0] : sums.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ $1) &* 0x100_0000_01B3 }
    }

    static func hex(_ v: UInt64) -> String { String(v, radix: 16) }
}
