import Infoset
import NIOCore

/// Splits the byte stream into frames, refusing oversize, undersize and other-version frames
/// before allocating for them. (Buffers' DATA_CHUNKs are read by a `DataLink`, not here.)
struct FrameReader {
    let maxFrame: Int
    /// Bytes of a frame not yet complete.
    private var partial: ByteBuffer?

    init(maxFrame: Int) { self.maxFrame = maxFrame }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// Hands each frame complete with `bytes` to `each`, in order, until `each` returns false.
    mutating func read(_ bytes: inout ByteBuffer, _ each: (Wire.Frame) -> Bool) throws(Refused) {
        var buffer: ByteBuffer
        if var p = partial {
            partial = nil
            p.writeBuffer(&bytes)
            buffer = p
        } else {
            buffer = bytes
        }
        while let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) {
            if let problem = Wire.lengthProblem(Int(length), limit: maxFrame) { throw Refused(description: problem) }
            guard buffer.readableBytes >= 4 + Int(length) else { break }
            buffer.moveReaderIndex(forwardBy: 4)
            let version = buffer.readInteger(as: UInt8.self)!
            let type = buffer.readInteger(as: UInt8.self)!
            if let problem = Wire.versionProblem(version) { throw Refused(description: problem) }
            guard each(Wire.Frame(rawType: type, payload: buffer.readBytes(length: Int(length) - 2)!)) else { return }
        }
        if buffer.readableBytes > 0 {
            buffer.discardReadBytes()
            partial = buffer
        }
    }
}

import Synchronization

extension Channel {
    /// Writes a frame, from any thread. Frames sent while a write to this connection is already
    /// on its way to the event loop join it: one hop and one syscall carry them all.
    func send(_ frame: Wire.Frame) {
        Outbox.of(self).post(frame.type) { $0.bytes.append(contentsOf: frame.payload) }
    }

    /// Writes a frame whose payload `encode` writes straight into the connection's outgoing bytes.
    func send(_ type: Wire.FrameType, encode: (inout ByteWriter) -> Void) {
        Outbox.of(self).post(type.rawValue, encode)
    }
}

/// The frames waiting for one connection's event loop.
final class Outbox: Sendable {
    private static let all = Mutex<[ObjectIdentifier: Outbox]>([:])
    let channel: any Channel
    /// Frames encoded straight into the bytes the next write hands to the socket; the array keeps
    /// its capacity from one write to the next.
    private let pending = Mutex<(bytes: ByteWriter, scheduled: Bool)>((ByteWriter(capacity: 4096), false))

    private init(_ channel: any Channel) {
        self.channel = channel
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

    func post(_ type: UInt8, _ encode: (inout ByteWriter) -> Void) {
        let schedule = pending.withLock { p -> Bool in
            let start = p.bytes.bytes.count
            p.bytes.u32(0)
            p.bytes.byte(Wire.version)
            p.bytes.byte(type)
            encode(&p.bytes)
            p.bytes.setU32(UInt32(p.bytes.bytes.count - start - 4), at: start)
            if p.scheduled { return false }
            p.scheduled = true
            return true
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    private func drain() {
        let bytes = pending.withLock { p -> ByteBuffer in
            defer { p.bytes.bytes.removeAll(keepingCapacity: p.bytes.bytes.capacity <= 1 << 20); p.scheduled = false }
            return channel.allocator.buffer(bytes: p.bytes.bytes)
        }
        channel.writeAndFlush(bytes, promise: nil)
    }
}
