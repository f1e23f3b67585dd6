import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A line a supervised process wrote, handed to the supervisor's `output` (the node logs it:
/// console, `/os/log`, syslog).
public struct OutputLine: Sendable, Equatable {
    public enum Stream: String, Sendable { case stdout, stderr }
    public var process: String
    public var stream: Stream
    public var line: String
}

/// Reads one pipe a child writes, line by line, without a thread of its own: a dispatch read
/// source wakes it when there are bytes (and keeps itself alive until cancelled at end of file).
/// A line longer than `maxLine` is handed on in pieces, so what is held stays bounded whatever
/// the child writes; the last line without a newline is handed on when the child closes the pipe.
enum OutputReader {
    static let maxLine = 4096

    /// Reads `fd` (the pipe's read end, which the reader owns and closes) until end of file.
    static func start(fd: Int32, process: String, stream: OutputLine.Stream, to output: @escaping @Sendable (OutputLine) -> Void) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let queue = DispatchQueue(label: "decos.output.\(process).\(stream.rawValue)")
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        // Touched only on `queue`, by the handlers below, one at a time.
        nonisolated(unsafe) var pending: [UInt8] = []
        func emit(_ bytes: some Collection<UInt8>) {
            output(OutputLine(process: process, stream: stream, line: String(decoding: bytes, as: UTF8.self)))
        }
        source.setEventHandler {
            var chunk = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
                if n <= 0 {
                    if !pending.isEmpty { emit(pending) }
                    pending = []
                    source.cancel()
                    return
                }
                pending += chunk[..<n]
                while let newline = pending.firstIndex(of: 10) {
                    emit(pending[..<newline])
                    pending.removeSubrange(...newline)
                }
                while pending.count >= Self.maxLine {
                    emit(pending.prefix(Self.maxLine))
                    pending.removeFirst(Self.maxLine)
                }
            }
        }
        source.setCancelHandler { close(fd) }
        source.resume()
    }
}
