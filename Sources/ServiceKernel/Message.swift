import Infoset
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Bytes that travel beside a message rather than inside it. A class so that handing a message to
/// a local service passes the buffer by reference; the data plane moves it between nodes.
public final class DataBuffer: Sendable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var count: Int { bytes.count }

    deinit { RecycledMemory.shared.give(bytes) }
}

/// Large buffers whose `DataBuffer` is gone, kept for the next import of a similar size: landing
/// bytes in fresh memory costs a page fault and a zeroed page per 4 KiB, which is most of what a
/// transfer costs once the network is fast. Bounded, newest kept; a buffer still shared elsewhere
/// is copied on first write (arrays are copy-on-write), so recycling never aliases live data.
public final class RecycledMemory: Sendable {
    public static let shared = RecycledMemory(limit: 512 << 20)
    static let minimum = 1 << 20
    let limit: Int
    private let buffers = Mutex<[[UInt8]]>([])

    init(limit: Int) { self.limit = limit }

    func give(_ bytes: [UInt8]) {
        guard bytes.count >= Self.minimum, bytes.count <= limit else { return }
        buffers.withLock { b in
            b.append(bytes)
            var total = b.reduce(0) { $0 + $1.count }
            while total > limit { total -= b.removeFirst().count }
        }
    }

    /// A buffer of exactly `length` bytes (contents undefined) from one between `length` and twice
    /// that, or nil.
    public func take(_ length: Int) -> [UInt8]? {
        guard length >= Self.minimum else { return nil }
        guard var found = buffers.withLock({ b -> [UInt8]? in
            guard let i = b.lastIndex(where: { $0.count >= length && $0.count <= 2 * length }) else { return nil }
            return b.remove(at: i)
        }) else { return nil }
        found.removeLast(found.count - length)
        return found
    }

    /// Memory for `length` bytes to land in: recycled if there is some, else fresh and not zeroed
    /// (every byte is about to be written), with a large block's pages made present in one call
    /// (MADV_POPULATE_WRITE) rather than faulted in one by one as the bytes arrive.
    public func landing(_ length: Int) -> [UInt8] {
        if let recycled = take(length) { return recycled }
        var fresh = [UInt8](unsafeUninitializedCapacity: length) { _, count in count = length }
        guard length >= Self.minimum else { return fresh }
        fresh.withUnsafeMutableBytes { b in
            let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
            let start = (UInt(bitPattern: b.baseAddress!) + page - 1) & ~(page - 1)
            let end = (UInt(bitPattern: b.baseAddress!) + UInt(length)) & ~(page - 1)
            // On kernels before 5.14 this fails and the pages fault in as they are written.
            if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), 23 /* MADV_POPULATE_WRITE */) }
        }
        return fresh
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

        init() {}

        func copy() -> Extra {
            let e = Extra()
            e.messageID = messageID
            e.relatesTo = relatesTo
            e.replyTo = replyTo
            e.from = from
            e.fault = fault
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
