import Crypto
import Infoset
import NIOCore

/// The two directions of one authenticated connection's frames (`ClusterKey.ciphers`).
struct Session: Sendable {
    var sending: FrameCipher
    var receiving: FrameCipher
}

/// One direction of one connection after its handshake: every frame sealed with AES-256-GCM
/// under a key of its own (docs/security.md). The nonce is the count of frames sealed before it:
/// TCP delivers in order, so the receiver counts alike, and a frame replayed, dropped, reordered
/// or changed on the way fails to open. The frame's header (length, version, type) is authenticated
/// with it; the type stays readable, so a reader can tell a chunk from a call before opening it.
///
/// A sealed frame: u32 length | u8 version | u8 type | ciphertext | 16-byte tag, the length
/// counting everything after itself.
struct FrameCipher: Sendable {
    /// What sealing adds to a frame.
    static let overhead = 16
    private let key: SymmetricKey
    private var sequence: UInt64 = 0

    init(key: SymmetricKey) { self.key = key }

    private mutating func nextNonce() -> AES.GCM.Nonce {
        var n = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { n[4 + i] = UInt8(truncatingIfNeeded: sequence >> (56 - 8 * i)) }
        sequence += 1  // 2^64 frames on one connection will not happen
        return try! AES.GCM.Nonce(data: n)  // a 12-byte nonce is always valid
    }

    /// The header of a sealed frame whose plaintext is `count` bytes.
    static func header(type: UInt8, plaintext count: Int) -> [UInt8] {
        let length = UInt32(count + 2 + overhead)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8),
                UInt8(truncatingIfNeeded: length), Wire.version, type]
    }

    /// Seals a frame whose payload is `plaintext`, appending the whole sealed frame to `out`.
    mutating func seal(type: UInt8, _ plaintext: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let header = Self.header(type: type, plaintext: plaintext.count)
        // Sealing with a valid key and nonce does not fail.
        let box = try! AES.GCM.seal(plaintext, using: key, nonce: nextNonce(), authenticating: header)
        out.writeBytes(header)
        out.writeBytes(box.ciphertext)
        out.writeBytes(box.tag)
    }

    /// The whole sealed frame for `frame`.
    mutating func seal(_ frame: Wire.Frame) -> [UInt8] {
        var out = ByteBuffer()
        frame.payload.withUnsafeBytes { seal(type: frame.type, $0, into: &out) }
        return out.readBytes(length: out.readableBytes) ?? []
    }

    /// Opens the rest of a sealed frame of type `type` (ciphertext and tag) and hands its
    /// plaintext to `body`; nil, and `body` not called, if it does not open.
    mutating func open<R>(type: UInt8, _ sealed: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard sealed.count >= Self.overhead else { return nil }
        let n = sealed.count - Self.overhead
        let header = Self.header(type: type, plaintext: n)
        guard let box = try? AES.GCM.SealedBox(nonce: nextNonce(), ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<n]),
                                               tag: UnsafeRawBufferPointer(rebasing: sealed[n...])),
              let plain = try? AES.GCM.open(box, using: key, authenticating: header) else { return nil }
        return plain.withUnsafeBytes(body)
    }

    /// The payload of a sealed frame, or nil if it does not open.
    mutating func open(_ frame: Wire.Frame) -> Wire.Frame? {
        frame.withPayload { sealed in open(type: frame.type, sealed) { Wire.Frame(rawType: frame.type, Array($0)) } }
    }
}

/// Seals every frame written to a connection once its handshake is done (`start`), on the
/// connection's event loop: the order frames are sealed in is the order they reach the socket,
/// whichever thread queued them. Everything written here is whole frames: an Outbox's batch, a
/// data chunk, an error frame.
final class FrameSealer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var cipher: FrameCipher?

    /// Seals every frame written from now on; called on the event loop, before any frame that
    /// must be sealed is written.
    func start(_ cipher: FrameCipher) { self.cipher = cipher }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard cipher != nil else { return context.write(data, promise: promise) }
        var frames = unwrapOutboundIn(data)
        var out = context.channel.allocator.buffer(capacity: frames.readableBytes + FrameCipher.overhead * 4)
        while let length = frames.readInteger(as: UInt32.self), frames.readableBytes >= Int(length), length >= 2,
              let _ = frames.readInteger(as: UInt8.self), let type = frames.readInteger(as: UInt8.self) {
            let n = Int(length) - 2
            frames.withUnsafeReadableBytes { cipher!.seal(type: type, UnsafeRawBufferPointer(rebasing: $0[..<n]), into: &out) }
            frames.moveReaderIndex(forwardBy: n)
        }
        precondition(frames.readableBytes == 0, "a write to a peer connection that is not whole frames")
        context.write(wrapOutboundOut(out), promise: promise)
    }
}
