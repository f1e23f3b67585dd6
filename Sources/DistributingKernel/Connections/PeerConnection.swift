import Infoset
import NIOCore
import Synchronization

/// One authenticated connection to a peer, as the node's parts hold it: the channel, and the
/// frames waiting for its event loop. Frames posted from any thread while a write is already on
/// its way to the loop join it: one hop and one syscall carry them all. Made by the handshake
/// once the peer has authenticated, handed to the endpoint and to the connection's router, and
/// held by whoever sends on it (`ControlLinks`, a request's reply): no table keyed by channel.
final class PeerConnection: Sendable {
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
            case .queueFull: "\(PeerConnection.maxQueued) bytes are already waiting for this peer to read them"
            }
        }
    }

    init(_ channel: any Channel) {
        self.channel = channel
    }

    var isActive: Bool { channel.isActive }

    func close() { channel.close(promise: nil) }

    /// Writes a frame, from any thread.
    @discardableResult
    func send(_ frame: Wire.Frame) -> Refusal? {
        post(frame.type) { $0.bytes.append(contentsOf: frame.payload) }
    }

    /// Writes a frame whose payload `encode` writes straight into the connection's outgoing bytes.
    @discardableResult
    func send(_ type: Wire.FrameType, encode: (inout ByteWriter) -> Void) -> Refusal? {
        post(type.rawValue, encode)
    }

    /// Queues a frame; a refusal (and nothing queued) if it is too large or the queue is full.
    private func post(_ type: UInt8, _ encode: (inout ByteWriter) -> Void) -> Refusal? {
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
