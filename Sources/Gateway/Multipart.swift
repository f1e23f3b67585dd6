import NIOCore
import ServiceKernel

/// A `multipart/related` body (RFC 2387, as MTOM sends it) read as it arrives: the root part —
/// the envelope — into memory, every other part straight into buffer-pool memory, so a buffer is
/// never held whole in a socket buffer and again in the pool. Every count and size from the client
/// is checked before anything is allocated for it: a part's declared Content-Length counts against
/// the limit before its block is taken, and the root must come first, so the envelope (and the
/// client's right to send it) is checked by `admit` before any buffer takes pool memory.
struct MultipartReader {
    struct Limits {
        /// The root part (the envelope): the gateway's `maxRequestBytes`.
        var rootBytes: Int
        /// All other parts together, and so each one: the gateway's `maxBufferBytes`.
        var bufferBytes: Int
        var parts = 64
        var headerBytes = 8192
    }

    struct Part: Sendable {
        /// Header names lower-cased.
        var headers: [(name: String, value: String)]
        /// Without its angle brackets.
        var contentID: String?
        var bytes: [UInt8] = []
        var buffer: DataBuffer?

        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    }

    enum State { case preamble, afterDelimiter, headers, body, done }
    typealias Parts = (root: Part, others: [Part])

    let delimiter: [UInt8]
    let start: String?
    let limits: Limits
    let pool: BufferPool
    /// Called with the root part as soon as it is whole; a fault ends the request before any buffer is read.
    let admit: ((Part) throws(Fault) -> Void)?
    private(set) var state = State.preamble
    private(set) var parts: [Part] = []
    /// Bytes not yet taken: at most a chunk and the tail of the one before, where a delimiter may begin.
    private var pending: [UInt8] = [0x0D, 0x0A]
    private var current: Part?
    private var root = false
    private var sink: PoolSink?
    /// Buffer bytes the parts so far have declared or brought, whichever is more, each counted once.
    private var bufferTotal = 0
    /// The current part's Content-Length, and its bytes so far.
    private var declared: Int?
    private var received = 0
    private var rootSeen = false

    /// `boundary` from the Content-Type; `start` the root's Content-ID (the first part without it).
    init(boundary: String, start: String?, limits: Limits, pool: BufferPool, admit: ((Part) throws(Fault) -> Void)? = nil) throws(Fault) {
        guard (1...70).contains(boundary.utf8.count) else { throw Fault.malformed("a multipart boundary is 1 to 70 characters (RFC 2046)") }
        // The body starts with "--boundary": the CRLF in front of `pending` makes it match as every later one does.
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.start = start.map(Self.unbracketed)
        self.limits = limits
        self.pool = pool
        self.admit = admit
    }

    static func unbracketed(_ s: String) -> String {
        let t = s.trimmingXMLSpace()
        return t.hasPrefix("<") && t.hasSuffix(">") && t.count >= 2 ? String(t.dropFirst().dropLast()) : t
    }

    mutating func feed(_ chunk: ByteBuffer) throws(Fault) {
        pending += chunk.readableBytesView
        while try step() {}
    }

    /// The parts, once the closing delimiter has been read: the root first.
    mutating func finish() throws(Fault) -> Parts {
        guard state == .done else { throw Fault.malformed("the multipart body ended before its closing boundary") }
        guard let r = parts.firstIndex(where: { start == nil ? true : $0.contentID == start }) else {
            throw Fault.malformed("no part has the start Content-ID <\(start ?? "")>")
        }
        var others = parts
        let rootPart = others.remove(at: r)
        return (rootPart, others)
    }

    /// Takes what `pending` allows in the current state; false when it needs more bytes.
    private mutating func step() throws(Fault) -> Bool {
        switch state {
        case .preamble:
            guard let at = find(delimiter) else {
                // A preamble is ignored: keep only what could begin the delimiter.
                pending.removeFirst(max(0, pending.count - delimiter.count + 1))
                return false
            }
            pending.removeFirst(at + delimiter.count)
            state = .afterDelimiter
            return true
        case .afterDelimiter:
            // Transport padding (spaces, tabs) may follow a delimiter; "--" closes the body.
            while let first = pending.first, first == 0x20 || first == 0x09 { pending.removeFirst() }
            guard pending.count >= 2 else { return false }
            if pending[0] == UInt8(ascii: "-"), pending[1] == UInt8(ascii: "-") {
                state = .done
                pending = []
                return false
            }
            guard pending[0] == 0x0D, pending[1] == 0x0A else { throw Fault.malformed("a multipart delimiter is followed by neither CRLF nor --") }
            pending.removeFirst(2)
            state = .headers
            return true
        case .headers:
            let block: ArraySlice<UInt8>
            if pending.starts(with: [0x0D, 0x0A]) {
                block = []
                pending.removeFirst(2)
            } else if let end = find([0x0D, 0x0A, 0x0D, 0x0A]) {
                guard end <= limits.headerBytes else { throw Fault.tooLarge("a part's headers exceed \(limits.headerBytes) bytes") }
                block = pending[..<end]
                pending.removeFirst(end + 4)
            } else {
                guard pending.count <= limits.headerBytes else { throw Fault.tooLarge("a part's headers exceed \(limits.headerBytes) bytes") }
                return false
            }
            guard parts.count < limits.parts else { throw Fault.tooLarge("more than \(limits.parts) parts in one request") }
            try begin(Self.headers(block))
            state = .body
            return true
        case .body:
            if let at = find(delimiter) {
                try take(pending[..<at])
                pending.removeFirst(at + delimiter.count)
                try end()
                state = .afterDelimiter
                return true
            }
            let keep = min(pending.count, delimiter.count - 1)
            try take(pending[..<(pending.count - keep)])
            pending.removeFirst(pending.count - keep)
            return false
        case .done:
            pending = []  // the epilogue is ignored
            return false
        }
    }

    private mutating func begin(_ headers: [(name: String, value: String)]) throws(Fault) {
        var part = Part(headers: headers, contentID: headers.first { $0.name == "content-id" }.map { Self.unbracketed($0.value) })
        if let encoding = part.header("content-transfer-encoding")?.lowercased(), !["binary", "8bit", "7bit"].contains(encoding) {
            throw Fault.malformed("Content-Transfer-Encoding \(encoding) is not taken: MTOM parts are binary")
        }
        root = start == nil ? parts.isEmpty : part.contentID == start
        if root, rootSeen { throw Fault.malformed("two parts are the root (Content-ID <\(start ?? "")>)") }
        declared = nil
        received = 0
        if !root {
            guard rootSeen else {
                throw Fault.malformed("the envelope (the root part) must come first: it is checked before any buffer is taken")
            }
            // Sized by the part's own Content-Length when it gives one (counted against the limit
            // before the block is taken), else grown as it comes.
            if let length = part.header("content-length") {
                guard let n = Int(length), n >= 0 else { throw Fault.malformed("a part's Content-Length \(length) is not a number of bytes") }
                guard n <= limits.bufferBytes - bufferTotal else {
                    throw Fault.tooLarge("a part of \(n) bytes takes the request past the gateway's buffer limit of \(limits.bufferBytes) bytes")
                }
                declared = n
                bufferTotal += n
            }
            // A declared length is counted, not yet taken: the first block is at most 1 MiB, and
            // blocks double as bytes arrive (up to the declared length), so what a client holds of
            // the pool is at most twice what it has sent.
            sink = try PoolSink(pool: pool, expected: min(declared ?? 64 << 10, 1 << 20), atMost: declared)
        }
        part.bytes = []
        current = part
    }

    private mutating func take(_ bytes: ArraySlice<UInt8>) throws(Fault) {
        guard !bytes.isEmpty else { return }
        if root {
            guard current!.bytes.count + bytes.count <= limits.rootBytes else {
                throw Fault.tooLarge("the envelope exceeds the gateway's limit of \(limits.rootBytes) bytes")
            }
            current!.bytes += bytes
        } else {
            received += bytes.count
            if let declared {
                guard received <= declared else { throw Fault.malformed("a part is longer than its Content-Length of \(declared) bytes") }
            } else {
                bufferTotal += bytes.count
                guard bufferTotal <= limits.bufferBytes else {
                    throw Fault.tooLarge("the parts exceed the gateway's buffer limit of \(limits.bufferBytes) bytes per request")
                }
            }
            try sink!.write(bytes)
        }
    }

    private mutating func end() throws(Fault) {
        guard var part = current else { return }
        if let declared, received != declared {
            throw Fault.malformed("a part is \(received) bytes, not the \(declared) its Content-Length says")
        }
        if root {
            rootSeen = true
            try admit?(part)
        }
        if let s = sink { part.buffer = s.finish() }
        sink = nil
        current = nil
        parts.append(part)
    }

    private func find(_ needle: [UInt8]) -> Int? {
        guard pending.count >= needle.count else { return nil }
        var i = 0
        let last = pending.count - needle.count
        while i <= last {
            guard let at = pending[i...last].firstIndex(of: needle[0]) else { return nil }
            if pending[at..<(at + needle.count)].elementsEqual(needle) { return at }
            i = at + 1
        }
        return nil
    }

    /// `Name: value` lines (names lower-cased); a line starting with white space continues the last.
    static func headers(_ block: ArraySlice<UInt8>) throws(Fault) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        for line in String(decoding: block, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: true) {
            if let first = line.first, first == " " || first == "\t", !out.isEmpty {
                out[out.count - 1].value += " " + String(line).trimmingXMLSpace()
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw Fault.malformed("a part's header line has no colon") }
            out.append((String(line[..<colon]).trimmingXMLSpace().lowercased(), String(line[line.index(after: colon)...]).trimmingXMLSpace()))
        }
        return out
    }
}

/// A part's bytes landing in pool memory: one block sized by the part's Content-Length, or one
/// that doubles as the part grows. The block goes back to the pool if the part is never finished.
final class PoolSink {
    let pool: BufferPool
    private var block: BufferPool.Block?
    private var count = 0

    /// The part's declared length, which no block grows past.
    let atMost: Int?

    init(pool: BufferPool, expected: Int, atMost: Int? = nil) throws(Fault) {
        self.pool = pool
        self.atMost = atMost
        do { block = try pool.block(for: max(expected, 1)) } catch { throw Fault.exhausted(error) }
    }

    func write(_ bytes: ArraySlice<UInt8>) throws(Fault) {
        guard let current = block else { return }
        if count + bytes.count > current.size {
            let bigger: BufferPool.Block
            let size = max(min(current.size * 2, atMost ?? .max), count + bytes.count)
            do { bigger = try pool.block(for: size) } catch { throw Fault.exhausted(error) }
            bigger.base.copyMemory(from: current.base, byteCount: count)
            pool.give(current)
            block = bigger
        }
        // The block is this sink's alone until `finish` hands it to a buffer (see DataBuffer).
        bytes.withUnsafeBytes { block!.base.advanced(by: count).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        count += bytes.count
    }

    func finish() -> DataBuffer {
        defer { block = nil }
        guard let b = block else { return DataBuffer([]) }
        return DataBuffer(landed: b, count: count, pool: pool)
    }

    deinit { if let block { pool.give(block) } }
}
