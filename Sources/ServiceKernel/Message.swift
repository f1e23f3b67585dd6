import Infoset
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Bytes that travel beside a message rather than inside it. A class so that handing a message to
/// a local service passes the buffer by reference; the data plane moves it between nodes.
///
/// A buffer lives in pool memory (`BufferPool`) when a service filled it in place
/// (`ServiceContext.buffer(count:fill:)`) or a data plane landed it; the planes send such memory as
/// it is. One made from a Swift array keeps the array.
///
/// `@unchecked Sendable`: the bytes are written only while the buffer is being made — by `fill`, or
/// by the data plane landing them before it hands the buffer over — and never once it is shared.
public final class DataBuffer: @unchecked Sendable {
    private enum Storage {
        case array([UInt8])
        case pool(BufferPool.Block, BufferPool)
    }
    private let storage: Storage
    public let count: Int

    public init(_ bytes: [UInt8]) {
        storage = .array(bytes)
        count = bytes.count
    }

    /// `count` bytes of `pool` memory, written in place by `fill`.
    public convenience init(count: Int, pool: BufferPool, fill: (UnsafeMutableRawBufferPointer) -> Void) throws(BufferPool.Exhausted) {
        let block = try pool.block(for: count)
        fill(UnsafeMutableRawBufferPointer(start: block.base, count: count))
        self.init(landed: block, count: count, pool: pool)
    }

    /// The first `count` bytes of `block`, already written; the buffer gives the block back to
    /// `pool` when it goes.
    public init(landed block: BufferPool.Block, count: Int, pool: BufferPool) {
        precondition(count <= block.size, "a buffer larger than its block")
        storage = .pool(block, pool)
        self.count = count
    }

    deinit { if case .pool(let block, let pool) = storage { pool.give(block) } }

    /// Reads the bytes where they are.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .array(let a): try a.withUnsafeBytes(body)
        case .pool(let b, _): try body(UnsafeRawBufferPointer(start: b.base, count: count))
        }
    }

    /// A copy of the bytes (free for an array-made buffer, one copy for pool memory): for small
    /// buffers and tests; move large ones with `withUnsafeBytes`.
    public var bytes: [UInt8] {
        switch storage {
        case .array(let a): a
        case .pool(let b, _):
            [UInt8](unsafeUninitializedCapacity: count) { p, n in
                if count > 0 { UnsafeMutableRawPointer(p.baseAddress!).copyMemory(from: b.base, byteCount: count) }
                n = count
            }
        }
    }

    /// The block it lives in, if it lives in pool memory: what an RDMA device registers.
    public var block: BufferPool.Block? {
        if case .pool(let b, _) = storage { b } else { nil }
    }
}

/// A header reference to a data buffer: the body names it by `id`.
public struct BufferRef: Sendable, Hashable {
    public var id: String
    public var length: Int
    public var buffer: DataBuffer

    public init(id: String, buffer: DataBuffer) {
        self.id = id
        self.length = buffer.count
        self.buffer = buffer
    }

    public static func == (a: BufferRef, b: BufferRef) -> Bool { a.id == b.id && a.length == b.length && a.buffer === b.buffer }
    public func hash(into h: inout Hasher) { h.combine(id); h.combine(length) }
}

/// One message: a request, a response, a fault, or a notification. In process it is this value;
/// it is encoded (as a SOAP envelope, or in binary between nodes) only when it leaves the process.
public struct Message: Sendable {
    public enum Kind: Sendable, Hashable {
        case request, response, fault, notification
    }

    public var kind: Kind
    public var verb: Verb
    /// The destination: a path (`/counter`) or a full URI (`decos://node/counter`).
    public var to: String
    /// The body's single child element, if any.
    public var body: Element?
    public var buffers: [BufferRef]
    /// Addressing headers and the fault live in one box, absent on the local fast path:
    /// a message that is only handed between local services stays small and cheap to copy.
    private var extra: Extra?

    final class Extra: @unchecked Sendable {
        var messageID: String?
        var relatesTo: String?
        var replyTo: String?
        var from: String?
        var fault: Fault?
        var sequence: UInt64 = 0

        init() {}

        func copy() -> Extra {
            let e = Extra()
            e.messageID = messageID
            e.relatesTo = relatesTo
            e.replyTo = replyTo
            e.from = from
            e.fault = fault
            e.sequence = sequence
            return e
        }
    }

    public init(_ verb: Verb, to: String, body: Element? = nil, kind: Kind = .request, buffers: [BufferRef] = []) {
        self.kind = kind
        self.verb = verb
        self.to = to
        self.body = body
        self.buffers = buffers
    }

    private mutating func set<T>(_ path: ReferenceWritableKeyPath<Extra, T>, _ value: T) {
        if extra == nil {
            extra = Extra()
        } else if !isKnownUniquelyReferenced(&extra!) {
            extra = extra!.copy()
        }
        extra![keyPath: path] = value
    }

    /// A notification's number in its subscription, from 1 (0: not numbered): a subscriber that
    /// sees one missing knows it missed a change (docs/services.md, "Subscriptions").
    public var sequence: UInt64 {
        get { extra?.sequence ?? 0 }
        set { set(\.sequence, newValue) }
    }

    public var messageID: String? {
        get { extra?.messageID }
        set { if newValue != nil || extra != nil { set(\.messageID, newValue) } }
    }
    public var relatesTo: String? {
        get { extra?.relatesTo }
        set { if newValue != nil || extra != nil { set(\.relatesTo, newValue) } }
    }
    public var replyTo: String? {
        get { extra?.replyTo }
        set { if newValue != nil || extra != nil { set(\.replyTo, newValue) } }
    }
    public var from: String? {
        get { extra?.from }
        set { if newValue != nil || extra != nil { set(\.from, newValue) } }
    }
    public var fault: Fault? {
        get { extra?.fault }
        set { if newValue != nil || extra != nil { set(\.fault, newValue) } }
    }

    public static func faulted(_ fault: Fault, replyingTo request: Message) -> Message {
        var m = Message(request.verb, to: request.replyTo ?? request.from ?? "", kind: .fault)
        m.relatesTo = request.messageID
        m.fault = fault
        return m
    }

    public static func response(to request: Message, body: Element?) -> Message {
        var m = Message(request.verb, to: "", body: body, kind: .response)
        if let extra = request.extra {
            m.to = extra.replyTo ?? extra.from ?? ""
            m.relatesTo = extra.messageID
        }
        return m
    }

    /// The WS-Addressing Action for this message.
    public var action: String {
        switch kind {
        case .request, .notification: verb.action
        case .response: verb.responseAction
        case .fault: SOAP.faultAction
        }
    }

    public func buffer(_ id: String) -> DataBuffer? { buffers.first { $0.id == id }?.buffer }

    /// The reply body, or the fault thrown as an error.
    public func result() throws(Fault) -> Element? {
        if let fault { throw fault }
        return body
    }
}
