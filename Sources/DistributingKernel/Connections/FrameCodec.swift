import Infoset
import NIOCore

/// Splits the byte stream into frames, refusing oversize, undersize and other-version frames
/// before allocating for them. (Buffers' DATA_CHUNKs are read by a `DataLink`, not here.)
struct FrameReader {
    let maxFrame: Int
    /// Bytes of a frame not yet complete.
    private var partial: [UInt8] = []

    init(maxFrame: Int) { self.maxFrame = maxFrame }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// Hands each frame complete with `bytes` to `each`, in order, until `each` returns false.
    /// What one read brought is copied out of the socket's buffer once, and its frames are handed
    /// on as ranges of that copy.
    /// `limit`, when given, is asked before each frame for the largest it may be: a connection's
    /// limit rises once its peer has authenticated, possibly between two frames of one read.
    mutating func read(_ bytes: inout ByteBuffer, limit: (() -> Int)? = nil, _ each: (Wire.Frame) -> Bool) throws(Refused) {
        var data: [UInt8] = []
        swap(&data, &partial)
        if data.isEmpty { data = bytes.readBytes(length: bytes.readableBytes) ?? [] } else { data.append(contentsOf: bytes.readableBytesView) }
        var at = 0
        while let (frame, next) = try Self.frame(in: data, at: at, limit: limit?() ?? maxFrame) {
            at = next
            guard each(frame) else { return }
        }
        // A frame still arriving: keep its start (the whole array when nothing completed, uncopied).
        if at == 0 { partial = data } else if at < data.count { partial = Array(data[at...]) }
    }

    /// The frame that starts at `at` in `data`, and where the next one starts; nil if it has not
    /// all arrived. Its length and version are checked before anything else is read.
    static func frame(in data: [UInt8], at: Int, limit: Int) throws(Refused) -> (Wire.Frame, Int)? {
        guard data.count - at >= 4 else { return nil }
        let length = Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
        if let problem = Wire.lengthProblem(length, limit: limit) { throw Refused(description: problem) }
        guard data.count - at >= 4 + length else { return nil }
        if let problem = Wire.versionProblem(data[at + 4]) { throw Refused(description: problem) }
        return (Wire.Frame(rawType: data[at + 5], in: data, range: at + 6..<at + 4 + length), at + 4 + length)
    }
}

/// The first handler of a peer connection: the bytes it reads, as frames. Until the handshake
/// raises `limit`, a frame larger than a handshake's ends the connection before anything is
/// allocated for it; so does any frame that is malformed, at any time.
final class FrameDecoder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Wire.Frame

    /// The largest frame taken now: raised by the handshake between two frames of one read.
    var limit = Wire.maxHandshakeFrame
    private var reader = FrameReader(maxFrame: Wire.maxFrame)
    private var failed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var bytes = unwrapInboundIn(data)
        do {
            try reader.read(&bytes, limit: { self.limit }) { frame in
                context.fireChannelRead(wrapInboundOut(frame))
                return context.channel.isActive
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
        }
    }
}

extension Wire {
    /// The whole frames `data` holds (what a SEALED frame carries); nil if anything in it is not one.
    static func frames(in data: [UInt8]) -> [Frame]? {
        var frames: [Frame] = []
        var at = 0
        while at < data.count {
            guard let (frame, next) = try? FrameReader.frame(in: data, at: at, limit: maxFrame) else { return nil }
            frames.append(frame)
            at = next
        }
        return frames
    }
}
