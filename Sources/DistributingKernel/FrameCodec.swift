import Infoset
import NIOCore

/// Splits the byte stream into frames, refusing oversize, undersize and other-version frames
/// before allocating for them.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Wire.Frame
    let maxFrame: Int

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 2 else { throw Refused(description: "frame of \(length) bytes is too short") }
        guard length <= maxFrame else { throw Refused(description: "frame of \(length) bytes exceeds the limit of \(maxFrame)") }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let version = buffer.readInteger(as: UInt8.self)!
        let type = buffer.readInteger(as: UInt8.self)!
        guard version == Wire.version else { throw Refused(description: "wire version \(version) is not supported (this node speaks \(Wire.version))") }
        if type == Wire.FrameType.dataChunk.rawValue {
            var frame = Wire.Frame(rawType: type, payload: [])
            frame.chunk = buffer.readSlice(length: Int(length) - 2)!
            context.fireChannelRead(wrapInboundOut(frame))
        } else {
            let payload = buffer.readBytes(length: Int(length) - 2)!
            context.fireChannelRead(wrapInboundOut(Wire.Frame(rawType: type, payload: payload)))
        }
        return .continue
    }
}

extension Channel {
    /// Writes a frame; thread-safe, as every Channel write is.
    func send(_ frame: Wire.Frame, flush: Bool = true) {
        let bytes = frame.encoded()
        let buffer = allocator.buffer(bytes: bytes)
        if flush { writeAndFlush(buffer, promise: nil) } else { write(buffer, promise: nil) }
    }
}
