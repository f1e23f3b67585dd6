import CAEAD

/// One AF_XDP transfer's AES-256-GCM, under the key its descriptor carries: frames are sealed
/// and opened in place, header authenticated with the body (XDPWire). `@unchecked Sendable`:
/// the C context keeps state between `caead_begin` and `caead_finish`, so it is used under its
/// owner's lock only (`XDPImport.state`, `XDPSending.state`).
final class XDPCipher: @unchecked Sendable {
    private let context: OpaquePointer

    /// nil for a key that is not 32 bytes or when libcrypto cannot make a context.
    init?(key: [UInt8]) {
        guard key.count == 32, let c = caead_new(key) else { return nil }
        context = c
    }

    deinit { caead_free(context) }

    /// A fresh random key.
    static func key() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<4).flatMap { _ in withUnsafeBytes(of: g.next()) { Array($0) } }
    }

    /// Seals the body after the headers of `frame` in place and writes the tag after it.
    func seal(_ frame: UnsafeMutableRawBufferPointer, _ h: XDPWire.Header) {
        let base = frame.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let body = XDPWire.ethernetBytes + XDPWire.headerBytes
        // Sealing with a valid context does not fail.
        let sealed = XDPWire.withNonce(h) { nonce in
            caead_seal(context, nonce, base + XDPWire.ethernetBytes, XDPWire.headerBytes, base + body, h.length, base + body + h.length)
        }
        precondition(sealed == 1, "AES-GCM sealing failed")
    }

    /// Decrypts `body` in place (`header` is the frame's 20-byte header); true if `tag` proves
    /// it is what the sender sealed. Nothing in `body` may be trusted otherwise.
    func open(_ h: XDPWire.Header, header: UnsafeRawBufferPointer, body: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer) -> Bool {
        guard XDPWire.withNonce(h, { caead_begin(context, $0, header.baseAddress!.assumingMemoryBound(to: UInt8.self), header.count) }) == 1 else { return false }
        if !body.isEmpty, caead_update(context, body.baseAddress!.assumingMemoryBound(to: UInt8.self), body.count) != 1 { return false }
        return caead_finish(context, tag.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
    }
}
