import NIOCore
import NIOHTTP1
import Synchronization

/// The writes of a streamed response (a SOAP subscription, the console's event stream), bounded:
/// a reader that falls more than `limit` bytes behind — a client that stopped reading, or reads
/// slower than the service changes — is sent a last word saying so and cut off, so what waits
/// for it in the node's memory never grows past the bound. The subscription then ends, and the
/// client subscribes again and reads the state afresh.
final class StreamWriter: Sendable {
    /// Bytes written but not yet taken by the client's socket, past which the stream is cut.
    static let defaultLimit = 1 << 20

    let channel: any Channel
    let limit: Int
    private let pending = Atomic<Int>(0)
    private let cut = Atomic<Bool>(false)

    init(_ channel: any Channel, limit: Int = StreamWriter.defaultLimit) {
        self.channel = channel
        self.limit = limit
    }

    /// Writes `bytes` as a chunk; false, with `farewell` written instead and the stream ended,
    /// once the reader is too far behind (and false for every write after that).
    @discardableResult
    func write(_ bytes: [UInt8], farewell: @autoclosure () -> [UInt8]) -> Bool {
        guard !cut.load(ordering: .relaxed) else { return false }
        // One message larger than the bound goes whole when nothing waits before it.
        let waiting = pending.add(bytes.count, ordering: .relaxed).newValue
        if waiting > limit, waiting > bytes.count {
            pending.subtract(bytes.count, ordering: .relaxed)
            guard cut.exchange(true, ordering: .relaxed) == false else { return false }
            channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: farewell()))), promise: nil)
            end()
            return false
        }
        let written = channel.eventLoop.makePromise(of: Void.self)
        // Completes when the socket took the bytes, or the connection closed and dropped them.
        written.futureResult.whenComplete { _ in self.pending.subtract(bytes.count, ordering: .relaxed) }
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: bytes))), promise: written)
        return true
    }

    /// Whether the stream was cut off for a slow reader.
    var wasCut: Bool { cut.load(ordering: .relaxed) }

    /// How long a reader that was cut off has to take what was written before the connection
    /// closes (and drops it): what waits for a reader that never reads is freed in the end.
    static let grace = TimeAmount.seconds(30)

    /// Ends the response and closes the connection once the client has it, or after the grace.
    func end() {
        let channel = channel
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
        channel.eventLoop.scheduleTask(in: StreamWriter.grace) { channel.close(promise: nil) }
    }
}
