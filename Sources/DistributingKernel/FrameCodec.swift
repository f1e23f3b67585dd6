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
        while data.count - at >= 4 {
            let length = Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
            if let problem = Wire.lengthProblem(length, limit: limit?() ?? maxFrame) { throw Refused(description: problem) }
            guard data.count - at >= 4 + length else { break }
            if let problem = Wire.versionProblem(data[at + 4]) { throw Refused(description: problem) }
            let frame = Wire.Frame(rawType: data[at + 5], in: data, range: at + 6..<at + 4 + length)
            at += 4 + length
            guard each(frame) else { return }
        }
        // A frame still arriving: keep its start (the whole array when nothing completed, uncopied).
        if at == 0 { partial = data } else if at < data.count { partial = Array(data[at...]) }
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
