import CAEAD
import Crypto
import Infoset
import Logging
import NIOCore

/// The two directions of one authenticated connection's frames (`ClusterKey.ciphers`).
struct Session: Sendable {
    let sending: FrameCipher
    let receiving: FrameCipher
}

/// One direction of one connection after its handshake: frames travel inside SEALED frames,
/// AES-256-GCM under a key of its own (docs/security.md). A SEALED frame holds one or more whole
/// frames — all that one write to the socket carries, up to `recordBytes` — so the fixed cost of
/// sealing is paid per write, not per call. The nonce is the count of SEALED frames before it:
/// TCP delivers in order, so the receiver counts alike, and a record replayed, dropped,
/// reordered or changed on the way fails to open. Its header is authenticated with it.
///
///     sealed := u32 length | u8 version | u8 0x08 | AES-256-GCM(frame frame …) | 16-byte tag
///
/// `@unchecked Sendable`: a cipher is used by one thread at a time — its connection's event
/// loop, a data link's reader thread, or under the data link's sending lock — and its C context
/// (keyed once, `CAEAD`) is reached only through these methods.
final class FrameCipher: @unchecked Sendable {
    /// What sealing adds to what it seals.
    static let overhead = 16
    /// Frames are gathered into one SEALED frame up to this size (a larger frame goes alone).
    static let recordBytes = 256 << 10
    private let context: OpaquePointer
    private var sequence: UInt64 = 0

    init(key: SymmetricKey) {
        // caead_new fails only when libcrypto cannot allocate: nothing a node can go on without.
        context = key.withUnsafeBytes { k in caead_new(k.bindMemory(to: UInt8.self).baseAddress!) }!
    }

    deinit { caead_free(context) }

    private func nextNonce() -> [UInt8] {
        var n = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { n[4 + i] = UInt8(truncatingIfNeeded: sequence >> (56 - 8 * i)) }
        sequence += 1  // 2^64 records on one connection will not happen
        return n
    }

    /// The header of a SEALED frame whose plaintext is `count` bytes.
    static func header(plaintext count: Int) -> [UInt8] {
        let length = UInt32(count + 2 + overhead)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
                UInt8(truncatingIfNeeded: length), Wire.version, Wire.FrameType.sealed.rawValue]
    }

    /// Seals in place: `record` is a SEALED frame's header, its plaintext, and 16 bytes for the tag.
    private func seal(record: UnsafeMutableRawBufferPointer) {
        let n = record.count - 6 - Self.overhead
        let base = record.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // Sealing with a valid context does not fail.
        precondition(caead_seal(context, nextNonce(), base, 6, base + 6, n, base + 6 + n) == 1, "AES-GCM sealing failed")
    }

    /// Seals `frames` (whole frames, header and all) into one SEALED frame appended to `out`.
    func seal(_ frames: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let start = out.writerIndex - out.readerIndex
        out.writeBytes(Self.header(plaintext: frames.count))
        out.writeBytes(frames)
        out.writeRepeatingByte(0, count: Self.overhead)
        out.withUnsafeMutableReadableBytes { seal(record: UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
    }

    /// The SEALED frame carrying `frame` alone.
    func seal(_ frame: Wire.Frame) -> [UInt8] {
        let inner = frame.encoded()
        var record = Self.header(plaintext: inner.count) + inner + [UInt8](repeating: 0, count: Self.overhead)
        record.withUnsafeMutableBytes { seal(record: $0) }
        return record
    }

    // Opening, in pieces: `begin`, `update` each piece in order, `finish`. Nothing decrypted may
    // be trusted before `finish` returns true.

    /// Starts opening a SEALED frame whose plaintext is `count` bytes.
    func begin(plaintext count: Int) -> Bool {
        caead_begin(context, nextNonce(), Self.header(plaintext: count), 6) == 1
    }

    /// Decrypts the next piece in place.
    func update(_ piece: UnsafeMutableRawBufferPointer) -> Bool {
        piece.isEmpty || caead_update(context, piece.baseAddress!.assumingMemoryBound(to: UInt8.self), piece.count) == 1
    }

    /// True if the tag proves everything decrypted since `begin` is what the peer sealed.
    func finish(tag: UnsafeRawBufferPointer) -> Bool {
        tag.count == Self.overhead && caead_finish(context, tag.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
    }

    /// The frames inside a SEALED frame, or nil if it does not open or they are not whole frames.
    func open(_ frame: Wire.Frame) -> [Wire.Frame]? {
        guard frame.known == .sealed else { return nil }
        var sealed = frame.payload
        guard sealed.count >= Self.overhead else { return nil }
        let n = sealed.count - Self.overhead
        let ok = sealed.withUnsafeMutableBytes { s in
            begin(plaintext: n) && update(UnsafeMutableRawBufferPointer(rebasing: s[..<n])) && finish(tag: UnsafeRawBufferPointer(rebasing: s[n...]))
        }
        guard ok else { return nil }
        sealed.removeLast(Self.overhead)
        return Wire.frames(in: sealed)
    }
}

/// Seals everything written to a connection once its handshake is done (`start`), on the
/// connection's event loop: records are numbered in the order they reach the socket, whichever
/// thread queued their frames. Everything written here is whole frames: a `PeerConnection`'s batch, a
/// data chunk, an error frame.
final class FrameSealer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var cipher: FrameCipher?

    /// Seals every write from now on; called on the event loop, before any write that must be sealed.
    func start(_ cipher: FrameCipher) { self.cipher = cipher }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let cipher else { return context.write(data, promise: promise) }
        let frames = unwrapOutboundIn(data)
        var out = context.channel.allocator.buffer(capacity: frames.readableBytes + 64)
        frames.withUnsafeReadableBytes { all in
            // Whole frames, gathered into records of up to `recordBytes` (a larger frame alone).
            var start = 0, at = 0
            while at + 4 <= all.count {
                let length = Int(all[at]) << 24 | Int(all[at + 1]) << 16 | Int(all[at + 2]) << 8 | Int(all[at + 3])
                let end = at + 4 + length
                precondition(end <= all.count, "a write to a peer connection that is not whole frames")
                if at > start && end - start > FrameCipher.recordBytes {
                    cipher.seal(UnsafeRawBufferPointer(rebasing: all[start..<at]), into: &out)
                    start = at
                }
                at = end
            }
            precondition(at == all.count, "a write to a peer connection that is not whole frames")
            if at > start { cipher.seal(UnsafeRawBufferPointer(rebasing: all[start..<at]), into: &out) }
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }
}

/// Opens the SEALED frames of an authenticated connection and passes on the frames inside. A
/// frame that does not open ends the connection; an unsealed ERROR frame is the peer refusing our
/// AUTH before it sealed anything, said as what it is.
final class FrameOpener: ChannelInboundHandler {
    typealias InboundIn = Wire.Frame
    typealias InboundOut = Wire.Frame

    private let cipher: FrameCipher
    private let peer: String
    private let logger: Logger
    private var failed = false

    init(_ cipher: FrameCipher, peer: String, logger: Logger) {
        self.cipher = cipher
        self.peer = peer
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let frame = unwrapInboundIn(data)
        if let frames = cipher.open(frame) {
            for f in frames { context.fireChannelRead(wrapInboundOut(f)) }
            return
        }
        failed = true
        var r = ByteReader(frame.payload)
        if frame.known == .error, let reason = try? r.string() {
            logger.warning("peer \(peer) refused us (unsealed, so unauthenticated): \(reason)")
            context.close(promise: nil)
            return
        }
        PeerPipeline.refuse(context.channel, peer: peer, "a frame from \(peer) failed to open: changed, replayed or dropped on the way, or not sent by the peer",
                            logger: logger)
    }
}
