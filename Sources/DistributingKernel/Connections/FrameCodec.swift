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

import Synchronization

extension Channel {
    /// Writes a frame, from any thread. Frames sent while a write to this connection is already
    /// on its way to the event loop join it: one hop and one syscall carry them all.
    @discardableResult
    func send(_ frame: Wire.Frame) -> Outbox.Refusal? {
        Outbox.of(self).post(frame.type) { $0.bytes.append(contentsOf: frame.payload) }
    }

    /// Writes a frame whose payload `encode` writes straight into the connection's outgoing bytes.
    @discardableResult
    func send(_ type: Wire.FrameType, encode: (inout ByteWriter) -> Void) -> Outbox.Refusal? {
        Outbox.of(self).post(type.rawValue, encode)
    }
}

/// The frames waiting for one connection's event loop.
final class Outbox: Sendable {
    private static let all = Mutex<[ObjectIdentifier: Outbox]>([:])
    let channel: any Channel
    /// Frames encoded straight into the bytes the next write hands to the socket; the array keeps
    /// its capacity from one write to the next.
    private let pending = Mutex<(bytes: ByteWriter, scheduled: Bool, unwritten: Int, posted: [Int])>((ByteWriter(capacity: 4096), false, 0, [Int](repeating: 0, count: 256)))
    /// The most bytes waiting for one peer (here, and handed to the socket but not yet written):
    /// a peer that stops reading makes its senders fail, not this node's memory grow.
    static let maxQueued = 64 << 20

    /// Why a frame was not sent; nothing of it was.
    enum Refusal: Error, CustomStringConvertible {
        /// Larger than a frame carries (`Wire.maxPayload`).
        case tooLarge(Int)
        /// `maxQueued` bytes are already waiting for the peer.
        case queueFull

        var description: String {
            switch self {
            case .tooLarge(let n): "the message is \(n) bytes encoded, over the \(Wire.maxPayload)-byte limit of a frame between nodes (send bulk data as a buffer)"
            case .queueFull: "\(Outbox.maxQueued) bytes are already waiting for this peer to read them"
            }
        }
    }

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

    /// Queues a frame; a refusal (and nothing queued) if it is too large or the queue is full.
    func post(_ type: UInt8, _ encode: (inout ByteWriter) -> Void) -> Refusal? {
        let outcome = pending.withLock { p -> Result<Bool, Refusal> in
            guard p.unwritten + p.bytes.bytes.count < Self.maxQueued else { return .failure(.queueFull) }
            let start = p.bytes.bytes.count
            p.bytes.u32(0)
            p.bytes.byte(Wire.version)
            p.bytes.byte(type)
            encode(&p.bytes)
            let length = p.bytes.bytes.count - start - 4
            if length - 2 > Wire.maxPayload {  // sealed, it would exceed what the receiver takes
                p.bytes.bytes.removeSubrange(start...)
                return .failure(.tooLarge(length - 2))
            }
            p.bytes.setU32(UInt32(length), at: start)
            p.posted[Int(type)] += 1
            if p.scheduled { return .success(false) }
            p.scheduled = true
            return .success(true)
        }
        switch outcome {
        case .failure(let refusal): return refusal
        case .success(let schedule):
            if schedule { channel.eventLoop.execute { self.drain() } }
            return nil
        }
    }

    /// How many frames of `type` were queued here: the order they were queued in is the order on the wire.
    func posted(_ type: Wire.FrameType) -> Int { pending.withLock { $0.posted[Int(type.rawValue)] } }

    private func drain() {
        let bytes = pending.withLock { p -> ByteBuffer in
            defer { p.bytes.bytes.removeAll(keepingCapacity: p.bytes.bytes.capacity <= 1 << 20); p.scheduled = false }
            p.unwritten += p.bytes.bytes.count
            return channel.allocator.buffer(bytes: p.bytes.bytes)
        }
        let count = bytes.readableBytes
        channel.writeAndFlush(bytes).whenComplete { _ in self.pending.withLock { $0.unwritten -= count } }
    }
}
