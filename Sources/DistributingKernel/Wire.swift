import Infoset
import NIOCore
import ServiceKernel

/// The wire format between nodes (docs/wire.md): length-prefixed, versioned frames whose payloads
/// are written with `ByteWriter` — binary, never XML text.
///
///     frame := u32 length | u8 version | u8 type | payload      (length counts version, type, payload)
public enum Wire {
    public static let version: UInt8 = 6
    /// The largest control frame a node accepts; buffers never ride in control frames.
    public static let maxFrame = 16 << 20
    /// The largest payload a frame carries: the frame's limit less its header, and less the
    /// header and tag of the sealed frame it travels in.
    public static let maxPayload = maxFrame - 2 - 6 - FrameCipher.overhead
    /// The largest frame a connection takes before its peer has authenticated: a HELLO or an AUTH
    /// is under 300 bytes, and nobody without the key gets to make this node buffer megabytes.
    public static let maxHandshakeFrame = 4096
    /// Data-plane chunks: large enough to amortise a frame, small enough to interleave transfers.
    public static let chunkSize = 1 << 20

    /// Why a frame with this length field (version, type and payload) cannot be taken; nil if it can.
    /// Every reader of frames checks this before allocating for the frame.
    static func lengthProblem(_ length: Int, limit: Int = maxFrame) -> String? {
        if length < 2 { return "frame of \(length) bytes is too short" }
        if length > limit { return "frame of \(length) bytes exceeds the limit of \(limit)" }
        return nil
    }

    static func versionProblem(_ version: UInt8) -> String? {
        version == Wire.version ? nil : "wire version \(version) is not supported (this node speaks \(Wire.version))"
    }

    public enum FrameType: UInt8, Sendable {
        case hello = 0x01
        case auth = 0x02
        case request = 0x03
        case reply = 0x04
        case notify = 0x05
        /// "The subscriber this notification named is gone": ends its subscriptions at the publisher.
        case unsubscribe = 0x06
        /// One or more whole frames, sealed (`FrameCipher`): after the handshake, the only frame.
        case sealed = 0x08
        case swim = 0x10
        case directory = 0x11
        case dataPull = 0x20
        case dataChunk = 0x21
        /// RDMA: "connect a queue pair to mine" (QPN, PSN, GID), and the answer with the other's.
        case rdmaConnect = 0x22
        case rdmaAccept = 0x23
        /// A receiver to the buffer's sender: bytes it has read of a buffer, and whether it is done.
        case dataProgress = 0x24
        case error = 0x7F
        /// Types with this bit set are optional: a receiver that does not know one skips it.
        /// Any other unknown type ends the connection with an error frame.
        public static let optionalBit: UInt8 = 0x80
    }

    public struct Frame: Sendable {
        public var type: UInt8
        /// The bytes the payload lies in: its own, or all that one socket read brought, shared by
        /// that read's frames so that none is copied out on its own.
        private let storage: [UInt8]
        private let range: Range<Int>

        public init(_ type: FrameType, _ payload: [UInt8]) {
            self.type = type.rawValue
            storage = payload
            range = payload.indices
        }

        init(rawType: UInt8, in storage: [UInt8], range: Range<Int>) {
            self.type = rawType
            self.storage = storage
            self.range = range
        }

        init(rawType: UInt8, _ payload: [UInt8]) {
            self.init(rawType: rawType, in: payload, range: payload.indices)
        }

        public var known: FrameType? { FrameType(rawValue: type) }

        /// Hands the payload, where it lies, to `body`.
        func withPayload<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
            storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        }

        public var payload: [UInt8] { range == storage.indices ? storage : Array(storage[range]) }

        /// Reads the payload where it lies.
        public var reader: ByteReader { ByteReader(storage, offset: range.lowerBound, end: range.upperBound) }

        public func encoded() -> [UInt8] {
            var w = ByteWriter(capacity: range.count + 6)
            w.u32(UInt32(range.count + 2))
            w.byte(Wire.version)
            w.byte(type)
            w.bytes.append(contentsOf: storage[range])
            return w.bytes
        }
    }

    // MARK: messages

    /// Where a buffer can be had: the data plane that moves it and what that plane needs to find
    /// it (for TCP, the transfer number to pull; docs/wire.md).
    public struct Offer: Sendable, Equatable {
        public var plane: UInt8
        public var descriptor: [UInt8]
        public init(plane: UInt8, descriptor: [UInt8]) {
            self.plane = plane
            self.descriptor = descriptor
        }
    }

    /// The most bytes a buffer's descriptor may take.
    static let maxDescriptor = 64

    /// A kernel message's control part. Buffers travel as references (id, length, where to have
    /// it: `Offer`); a data plane moves their bytes.
    public static func encode(_ m: Message, correlation: UInt64, offers: [Offer], into w: inout ByteWriter) {
        w.u64(correlation)
        w.byte(kindCode(m.kind))
        w.byte(UInt8(Verb.allCases.firstIndex(of: m.verb)!))
        w.string(m.to)
        w.optionalString(m.messageID)
        w.optionalString(m.relatesTo)
        w.optionalString(m.replyTo)
        w.optionalString(m.from)
        if let f = m.fault {
            w.byte(1)
            w.byte(faultCode(f.code))
            w.optionalString(f.subcode?.namespace)
            w.optionalString(f.subcode?.local)
            w.string(f.reason)
            if let d = f.detail { w.byte(1); BinaryInfoset.encode(d, into: &w) } else { w.byte(0) }
        } else {
            w.byte(0)
        }
        if let b = m.body { w.byte(1); BinaryInfoset.encode(b, into: &w) } else { w.byte(0) }
        w.varint(UInt64(m.buffers.count))
        for (b, o) in zip(m.buffers, offers) {
            w.string(b.id)
            w.u64(UInt64(b.length))
            w.byte(o.plane)
            w.data(o.descriptor)
        }
    }

    /// A decoded message whose buffers are still references to fetch.
    public struct Incoming: Sendable {
        public var correlation: UInt64
        public var message: Message
        public var buffers: [(id: String, length: Int, offer: Offer)]
    }

    public static func decodeMessage(_ payload: [UInt8]) throws(ByteReader.Failure) -> Incoming {
        try decodeMessage(ByteReader(payload))
    }

    public static func decodeMessage(_ reader: ByteReader) throws(ByteReader.Failure) -> Incoming {
        var r = reader
        let correlation = try r.u64()
        let kind = try kind(r.byte(), &r)
        let verbIndex = Int(try r.byte())
        guard verbIndex < Verb.allCases.count else { throw r.fail("unknown verb \(verbIndex)") }
        var m = Message(Verb.allCases[verbIndex], to: try r.string(), kind: kind)
        m.messageID = try r.optionalString()
        m.relatesTo = try r.optionalString()
        m.replyTo = try r.optionalString()
        m.from = try r.optionalString()
        if try r.byte() == 1 {
            let code = try faultCode(r.byte(), &r)
            let ns = try r.optionalString(), local = try r.optionalString()
            let reason = try r.string()
            let detail = try r.byte() == 1 ? try BinaryInfoset.decode(&r) : nil
            m.fault = Fault(code: code, subcode: local.map { QName(ns ?? "", $0) }, reason: reason, detail: detail)
        }
        if try r.byte() == 1 { m.body = try BinaryInfoset.decode(&r) }
        let n = try r.count()
        var buffers: [(String, Int, Offer)] = []
        for _ in 0..<n {
            let id = try r.string()
            let length = try r.u64()
            guard length <= UInt64(Int.max) else { throw r.fail("buffer length \(length)") }
            let plane = try r.byte()
            let descriptor = try r.data()
            guard descriptor.count <= maxDescriptor else { throw r.fail("a buffer descriptor of \(descriptor.count) bytes") }
            buffers.append((id, Int(length), Offer(plane: plane, descriptor: descriptor)))
        }
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes after the message") }
        return Incoming(correlation: correlation, message: m, buffers: buffers)
    }

    static func kindCode(_ k: Message.Kind) -> UInt8 {
        switch k { case .request: 0; case .response: 1; case .fault: 2; case .notification: 3 }
    }

    static func kind(_ b: UInt8, _ r: inout ByteReader) throws(ByteReader.Failure) -> Message.Kind {
        switch b {
        case 0: .request
        case 1: .response
        case 2: .fault
        case 3: .notification
        default: throw r.fail("unknown message kind \(b)")
        }
    }

    static func faultCode(_ c: Fault.Code) -> UInt8 {
        switch c { case .sender: 0; case .receiver: 1; case .versionMismatch: 2; case .mustUnderstand: 3 }
    }

    static func faultCode(_ b: UInt8, _ r: inout ByteReader) throws(ByteReader.Failure) -> Fault.Code {
        switch b {
        case 0: .sender
        case 1: .receiver
        case 2: .versionMismatch
        case 3: .mustUnderstand
        default: throw r.fail("unknown fault code \(b)")
        }
    }

    // MARK: membership

    public static func encode(_ m: Membership.Message, from: Membership.Member) -> [UInt8] {
        var w = ByteWriter()
        member(from, &w)
        switch m {
        case .ping(let seq, let g): w.byte(0); w.u64(seq); members(g, &w)
        case .pingReq(let seq, let target, let address, let g): w.byte(1); w.u64(seq); w.string(target); w.string(address); members(g, &w)
        case .ack(let seq, let g): w.byte(2); w.u64(seq); members(g, &w)
        case .sync(let view, let reply): w.byte(3); w.byte(reply ? 1 : 0); members(view, &w)
        case .gossip(let g): w.byte(4); members(g, &w)
        case .nack(let seq): w.byte(5); w.u64(seq)
        }
        return w.bytes
    }

    public static func decodeSWIM(_ payload: [UInt8]) throws(ByteReader.Failure) -> (from: Membership.Member, message: Membership.Message) {
        var r = ByteReader(payload)
        let from = try member(&r)
        let m: Membership.Message
        switch try r.byte() {
        case 0: m = .ping(seq: try r.u64(), gossip: try members(&r))
        case 1: m = .pingReq(seq: try r.u64(), target: try r.string(), targetAddress: try r.string(), gossip: try members(&r))
        case 2: m = .ack(seq: try r.u64(), gossip: try members(&r))
        case 3:
            let reply = try r.byte() == 1
            m = .sync(members: try members(&r), reply: reply)
        case 4: m = .gossip(members: try members(&r))
        case 5: m = .nack(seq: try r.u64())
        case let k: throw r.fail("unknown membership message \(k)")
        }
        return (from, m)
    }

    static func member(_ m: Membership.Member, _ w: inout ByteWriter) {
        w.string(m.name); w.string(m.address); w.u64(m.incarnation); w.byte(m.status.rawValue)
        if m.status == .suspect { w.string(m.suspector) }
    }

    static func member(_ r: inout ByteReader) throws(ByteReader.Failure) -> Membership.Member {
        let name = try r.string(), address = try r.string(), incarnation = try r.u64()
        guard let status = Membership.Status(rawValue: try r.byte()) else { throw r.fail("unknown member status") }
        let suspector = status == .suspect ? try r.string() : ""
        return Membership.Member(name: name, address: address, incarnation: incarnation, status: status, suspector: suspector)
    }

    static func members(_ ms: [Membership.Member], _ w: inout ByteWriter) {
        w.varint(UInt64(ms.count))
        for m in ms { member(m, &w) }
    }

    static func members(_ r: inout ByteReader) throws(ByteReader.Failure) -> [Membership.Member] {
        let n = try r.count()
        var out: [Membership.Member] = []
        for _ in 0..<n { out.append(try member(&r)) }
        return out
    }
}
