import DeviceDrivers
import Infoset

/// What the AF_XDP plane puts on the wire (docs/wire.md, "The AF_XDP plane"): the buffer
/// descriptor in a message, and the raw Ethernet frames of a transfer. Every decoder checks all
/// it reads; the plane drops, and counts, what fails.
///
///     frame  := ethernet(dst 6, src 6, type 0x88B5) | header | body | tag (16, when sealed)
///     header := u8 version | u8 type | u64 transfer | u64 sequence | u16 body length
///
/// (The body's length is said because a NIC pads a short frame to 60 bytes.)
/// The header is authenticated with the body; the body is sealed (AES-256-GCM under the
/// transfer's key, which only the message carrying the descriptor told) when the cluster seals
/// its frames. The nonce is the type and the sequence: a DATA frame's sequence is its chunk
/// number (a chunk sent again is the same plaintext under the same nonce), a PULL's, ACK's or
/// REFUSE's a count its sender keeps.
enum XDPWire {
    /// IEEE 802's first local experimental EtherType: frames of it are ours, the rest the kernel's.
    static let etherType: UInt16 = 0x88B5
    static let version: UInt8 = 1
    static let ethernetBytes = 14
    static let headerBytes = 20
    static let tagBytes = 16
    /// What a frame spends besides its payload.
    static let overhead = ethernetBytes + headerBytes + tagBytes
    /// The longest node name a PULL carries.
    static let maxName = 255
    /// Most SACK words an ACK carries: 512 chunks past the cumulative point.
    static let maxSackWords = 8
    /// The smallest chunk a PULL may ask for: a link of 64-byte payloads is not one to move buffers on.
    static let minChunk = 256

    enum Kind: UInt8 {
        /// Receiver → sender: send me transfer T, `length` bytes in chunks of `chunk`.
        case pull = 1
        /// Sender → receiver: chunk `sequence` of transfer T.
        case data = 2
        /// Receiver → sender: every chunk below `cumulative` is here, and those the SACK bits name.
        case ack = 3
        /// Sender → receiver: transfer T will not be sent, and why.
        case refuse = 4
    }

    struct Header: Equatable {
        var kind: Kind
        var transfer: UInt64
        var sequence: UInt64
        /// The body's bytes, the tag not counted.
        var length: Int
    }

    /// What a message carries for a buffer on this plane.
    struct Descriptor: Equatable {
        var mac: [UInt8]
        var queue: UInt16
        var transfer: UInt64
        /// The transfer's key (32 bytes) when frames are sealed, else empty.
        var key: [UInt8]
    }

    struct Pull: Equatable {
        var length: UInt64
        var chunk: Int
        /// The node asking: only the one the buffer was offered to gets it.
        var node: String
    }

    struct Ack: Equatable {
        var cumulative: UInt64
        /// Bit i of word w: chunk cumulative + 1 + 64·w + i is here.
        var sack: [UInt64]
    }

    // MARK: the descriptor: u8 version | 6 MAC | u16 queue | u64 transfer | u8 key length (0 or 32) | key

    static func encode(_ d: Descriptor) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.bytes += d.mac
        w.byte(UInt8(d.queue >> 8)); w.byte(UInt8(d.queue & 0xFF))
        w.u64(d.transfer)
        w.byte(UInt8(d.key.count))
        w.bytes += d.key
        return w.bytes
    }

    static func descriptor(_ bytes: [UInt8]) throws(ByteReader.Failure) -> Descriptor {
        var r = ByteReader(bytes)
        let v = try r.byte()
        guard v == version else { throw r.fail("descriptor version \(v), not \(version)") }
        var mac: [UInt8] = []
        for _ in 0..<6 { mac.append(try r.byte()) }
        guard mac[0] & 1 == 0, mac != [0, 0, 0, 0, 0, 0] else { throw r.fail("\(MAC.text(mac)) is not one interface's address") }
        let queue = UInt16(try r.byte()) << 8 | UInt16(try r.byte())
        let transfer = try r.u64()
        let n = try r.byte()
        guard n == 0 || n == 32 else { throw r.fail("a key of \(n) bytes, not 0 or 32") }
        var key: [UInt8] = []
        for _ in 0..<n { key.append(try r.byte()) }
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes after the end") }
        return Descriptor(mac: mac, queue: queue, transfer: transfer, key: key)
    }

    // MARK: frames

    /// Writes the Ethernet header and ours at the start of `frame`.
    static func writeHeaders(_ frame: UnsafeMutableRawBufferPointer, to dst: [UInt8], from src: [UInt8], _ h: Header) {
        frame.copyBytes(from: dst)
        UnsafeMutableRawBufferPointer(rebasing: frame[6...]).copyBytes(from: src)
        frame.storeBytes(of: etherType.bigEndian, toByteOffset: 12, as: UInt16.self)
        frame[14] = version
        frame[15] = h.kind.rawValue
        frame.storeBytes(of: h.transfer.bigEndian, toByteOffset: 16, as: UInt64.self)
        frame.storeBytes(of: h.sequence.bigEndian, toByteOffset: 24, as: UInt64.self)
        frame.storeBytes(of: UInt16(h.length).bigEndian, toByteOffset: 32, as: UInt16.self)
    }

    /// The header of a frame (Ethernet header included) and the MAC it came from (its six bytes
    /// in a number, first byte highest); nil for a
    /// frame too short for its header and body (and tag, when `sealed`), of another version or of
    /// an unknown type.
    static func header(_ frame: UnsafeRawBufferPointer, sealed: Bool) -> (Header, source: UInt64)? {
        let start = ethernetBytes + headerBytes
        guard frame.count >= start, frame[14] == version, let kind = Kind(rawValue: frame[15]),
              UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: 12, as: UInt16.self)) == etherType else { return nil }
        let h = Header(kind: kind, transfer: UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                       sequence: UInt64(bigEndian: frame.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                       length: Int(UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: 32, as: UInt16.self))))
        guard frame.count >= start + h.length + (sealed ? tagBytes : 0) else { return nil }
        let source = UInt64(UInt16(bigEndian: frame.loadUnaligned(fromByteOffset: 6, as: UInt16.self))) << 32
            | UInt64(UInt32(bigEndian: frame.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        return (h, source)
    }

    /// A frame's body and tag (empty when not sealed), once `header` has checked its length.
    static func body(_ frame: UnsafeRawBufferPointer, _ h: Header, sealed: Bool) -> (body: UnsafeRawBufferPointer, tag: UnsafeRawBufferPointer) {
        let start = ethernetBytes + headerBytes
        return (UnsafeRawBufferPointer(rebasing: frame[start..<start + h.length]),
                UnsafeRawBufferPointer(rebasing: frame[start + h.length..<start + h.length + (sealed ? tagBytes : 0)]))
    }

    /// Calls `body` with the nonce of a frame: its type and sequence, never the same twice under
    /// one key for different plaintexts. (On the stack: a frame's path allocates nothing.)
    static func withNonce<T>(_ h: Header, _ body: (UnsafePointer<UInt8>) -> T) -> T {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 12) { n in
            n.initialize(repeating: 0)
            n[0] = h.kind.rawValue
            UnsafeMutableRawBufferPointer(n).storeBytes(of: h.sequence.bigEndian, toByteOffset: 4, as: UInt64.self)
            return body(UnsafePointer(n.baseAddress!))
        }
    }

    // MARK: bodies

    /// PULL: u64 length | u16 chunk | u8 name length | name.
    static func encode(_ p: Pull) -> [UInt8] {
        var w = ByteWriter()
        w.u64(p.length)
        w.byte(UInt8(p.chunk >> 8)); w.byte(UInt8(p.chunk & 0xFF))
        let name = Array(p.node.utf8.prefix(maxName))
        w.byte(UInt8(name.count))
        w.bytes += name
        return w.bytes
    }

    static func pull(_ body: [UInt8]) throws(ByteReader.Failure) -> Pull {
        var r = ByteReader(body)
        let length = try r.u64()
        let chunk = Int(try r.byte()) << 8 | Int(try r.byte())
        guard chunk >= minChunk else { throw r.fail("chunks of \(chunk) bytes, under \(minChunk)") }
        let n = Int(try r.byte())
        var name: [UInt8] = []
        for _ in 0..<n { name.append(try r.byte()) }
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes after the end") }
        return Pull(length: length, chunk: chunk, node: String(decoding: name, as: UTF8.self))
    }

    /// ACK: u64 cumulative | u8 words | words × u64.
    static func encode(_ a: Ack) -> [UInt8] {
        var w = ByteWriter()
        w.u64(a.cumulative)
        w.byte(UInt8(a.sack.count))
        for word in a.sack { w.u64(word) }
        return w.bytes
    }

    static func ack(_ body: [UInt8]) throws(ByteReader.Failure) -> Ack {
        var r = ByteReader(body)
        let cumulative = try r.u64()
        let n = Int(try r.byte())
        guard n <= maxSackWords else { throw r.fail("\(n) SACK words, over \(maxSackWords)") }
        var sack: [UInt64] = []
        for _ in 0..<n { sack.append(try r.u64()) }
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes after the end") }
        return Ack(cumulative: cumulative, sack: sack)
    }

    /// REFUSE: the reason, UTF-8, at most 255 bytes (the rest of the body).
    static func encode(refusal: String) -> [UInt8] { Array(refusal.utf8.prefix(255)) }

    static func refusal(_ body: [UInt8]) throws(ByteReader.Failure) -> String {
        guard body.count <= 255 else { throw ByteReader(body).fail("a reason of \(body.count) bytes, over 255") }
        return String(decoding: body, as: UTF8.self)
    }
}
