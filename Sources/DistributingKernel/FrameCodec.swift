import Infoset
import NIOCore

/// Splits the byte stream into frames, refusing oversize, undersize and other-version frames
/// before allocating for them. (Buffers' DATA_CHUNKs are read by a `DataLink`, not here.)
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Wire.Frame
    let maxFrame: Int

    init(maxFrame: Int) { self.maxFrame = maxFrame }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        if let problem = Wire.lengthProblem(Int(length), limit: maxFrame) { throw Refused(description: problem) }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let version = buffer.readInteger(as: UInt8.self)!
        let type = buffer.readInteger(as: UInt8.self)!
        if let problem = Wire.versionProblem(version) { throw Refused(description: problem) }
        context.fireChannelRead(wrapInboundOut(Wire.Frame(rawType: type, payload: buffer.readBytes(length: Int(length) - 2)!)))
        return .continue
    }
}

import Synchronization

extension Channel {
    /// Writes a frame, from any thread. Frames sent while a write to this connection is already
    /// on its way to the event loop join it: one hop and one syscall carry them all.
    func send(_ frame: Wire.Frame) {
        Outbox.of(self).post(frame)
    }
}

/// The frames waiting for one connection's event loop.
final class Outbox: Sendable {
    private static let all = Mutex<[ObjectIdentifier: Outbox]>([:])
    let channel: any Channel
    /// Frames encoded straight into the buffer the next write hands to the socket.
    private let pending: Mutex<(bytes: ByteBuffer, scheduled: Bool)>

    private init(_ channel: any Channel) {
        self.channel = channel
        pending = Mutex((channel.allocator.buffer(capacity: 0), false))
    }

    static func of(_ channel: any Channel) -> Outbox {
        let (box, new) = all.withLock { all -> (Outbox, Bool) in
            if let b = all[ObjectIdentifier(channel)] { return (b, false) }
            let b = Outbox(channel)
            all[ObjectIdentifier(channel)] = b
            return (b, true)
        }
        if new { channel.closeFuture.whenComplete { _ in _ = all.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) } } }
        return box
    }

    func post(_ frame: Wire.Frame) {
        let schedule = pending.withLock { p -> Bool in
            p.bytes.writeInteger(UInt32(frame.payload.count + 2))
            p.bytes.writeInteger(Wire.version)
            p.bytes.writeInteger(frame.type)
            p.bytes.writeBytes(frame.payload)
            if p.scheduled { return false }
            p.scheduled = true
            return true
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    private func drain() {
        let bytes = pending.withLock { p -> ByteBuffer in
            defer { p.bytes = channel.allocator.buffer(capacity: 0); p.scheduled = false }
            return p.bytes
        }
        channel.writeAndFlush(bytes, promise: nil)
    }
}
