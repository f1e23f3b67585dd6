import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

/// SOAP 1.2 with MTOM/XOP at the gateway (docs/services.md, "Buffers at the edge"): a request in
/// `multipart/related` parts becomes a message whose buffers are the parts its envelope includes,
/// and a reply with buffers goes back the same way.
///
/// A part is included by `<d:Buffer id="ID"><xop:Include href="cid:…"/></d:Buffer>` in the header
/// (the buffer takes that id, as in the text binding) or by an `xop:Include` anywhere in the body
/// (a part no header names becomes the buffer whose id is its Content-ID; the Include stays where
/// it is, naming it, and going out again it names that buffer's part). A part that nothing
/// includes, or an Include of no part, is a fault: no bytes are dropped in silence.
public enum MTOM {
    static let xop = SOAP.xopNamespace
    static let rootID = "envelope@decos"

    /// The message in `parts`, with `action` from the Content-Type for an envelope without wsa:Action.
    static func message(_ parts: MultipartReader.Parts, action: String?) throws(Fault) -> Message {
        try message(envelope(parts.root, action: action), parts: parts.others)
    }

    /// The root part's message, and the parts its header and body include, which are not read yet.
    struct Envelope {
        var message: Message
        var headerIncludes: [(id: String, cid: String)] = []
        var bodyIncludes: [String] = []
    }

    /// The envelope alone: the gateway checks it (and the client's right to send it) before it
    /// takes any of the other parts into pool memory.
    static func envelope(_ root: MultipartReader.Part, action: String?) throws(Fault) -> Envelope {
        if let type = root.header("content-type")?.lowercased(), !type.hasPrefix("application/xop+xml"), !type.hasPrefix("application/soap+xml") {
            throw Fault(.sender, "UnsupportedMediaType", "the root part of an MTOM request is application/xop+xml (got \(type))")
        }
        var tree: Element
        do { tree = try XMLReader.parse(root.bytes, limits: SOAP.limits) } catch { throw Fault.malformed("malformed XML at \(error)") }
        var headerIncludes: [(id: String, cid: String)] = []
        var bodyIncludes: [String] = []
        tree = try resolve(tree, header: &headerIncludes, body: &bodyIncludes)
        return Envelope(message: try SOAP.decode(tree, action: action), headerIncludes: headerIncludes, bodyIncludes: bodyIncludes)
    }

    /// The envelope's message with the parts it includes as its buffers.
    static func message(_ envelope: Envelope, parts others: [MultipartReader.Part]) throws(Fault) -> Message {
        var m = envelope.message
        // Parts by Content-ID; the same id twice would make an Include ambiguous.
        var byID: [String: DataBuffer] = [:]
        for p in others {
            guard let id = p.contentID, !id.isEmpty else { throw Fault.malformed("an MTOM part has no Content-ID") }
            guard byID[id] == nil else { throw Fault.malformed("two MTOM parts have the Content-ID <\(id)>") }
            byID[id] = p.buffer ?? DataBuffer([])
        }
        var used = Set<String>()
        for i in envelope.headerIncludes {
            guard let buffer = byID[i.cid] else { throw Fault.malformed("xop:Include of cid:\(i.cid) names no part of the request") }
            guard used.insert(i.cid).inserted else { throw Fault.malformed("the part <\(i.cid)> is included twice") }
            m.buffers.append(BufferRef(id: i.id, buffer: buffer))
        }
        for cid in envelope.bodyIncludes where !used.contains(cid) {
            guard let buffer = byID[cid] else { throw Fault.malformed("xop:Include of cid:\(cid) names no part of the request") }
            used.insert(cid)
            m.buffers.append(BufferRef(id: cid, buffer: buffer))
        }
        if let stray = byID.keys.sorted().first(where: { !used.contains($0) }) {
            throw Fault.malformed("the part <\(stray)> is included nowhere in the envelope")
        }
        return m
    }

    /// The tree with each header `d:Buffer` that includes a part taken out (its bytes are that
    /// part), noting the header's includes by buffer id and the body's by Content-ID.
    static func resolve(_ e: Element, header: inout [(id: String, cid: String)], body: inout [String], inHeader: Bool = false) throws(Fault) -> Element {
        var out = e
        out.children = []
        for child in e.children {
            guard case .element(let c) = child else { out.children.append(child); continue }
            if c.name == QName(xop, "Include") {
                body.append(try cid(c))
                out.children.append(child)
            } else if inHeader, c.name == QName(SOAP.decosNamespace, "Buffer"), let include = c.elements.first(where: { $0.name == QName(xop, "Include") }) {
                guard let id = c.attribute("id"), !id.isEmpty else { throw Fault.malformed("Buffer header without an id") }
                header.append((id, try cid(include)))
            } else {
                out.children.append(.element(try resolve(c, header: &header, body: &body, inHeader: c.name == QName(SOAP.envelopeNamespace, "Header"))))
            }
        }
        return out
    }

    /// A body's Includes that name one of `ids` (a buffer's id) made to name that buffer's part.
    static func pointIncludes(_ e: Element, _ ids: [String: Int]) -> Element {
        var out = e
        out.children = e.children.map { child in
            guard case .element(let c) = child else { return child }
            if c.name == QName(xop, "Include"), let id = try? cid(c), let index = ids[id] {
                var pointed = c
                pointed.attributes = [Attribute(QName("href"), "cid:" + SOAP.xopContentID(index))]
                return .element(pointed)
            }
            return .element(pointIncludes(c, ids))
        }
        return out
    }

    /// `cid:abc%40x` → `abc@x` (RFC 2392: the Content-ID, %-escaped).
    static func cid(_ include: Element) throws(Fault) -> String {
        guard let href = include.attribute("href"), href.lowercased().hasPrefix("cid:") else {
            throw Fault.malformed("xop:Include without an href=\"cid:…\"")
        }
        return Gateway.percentDecoded(Array(href.utf8.dropFirst(4)), plusIsSpace: false)
    }

    /// A reply with buffers as `multipart/related`: the envelope first, each buffer a binary part.
    static func response(_ reply: Message, status: HTTPResponseStatus) -> Gateway.Response {
        let (type, body) = encode(reply)
        return Gateway.Response(status: status, contentType: type, body: body)
    }

    /// `m` as MTOM: the Content-Type (with its boundary) and the body. (`decos ctl --buffer` sends
    /// requests so; the gateway, replies.)
    public static func encode(_ message: Message) -> (contentType: String, body: [UInt8]) {
        var m = message
        let ids = Dictionary(m.buffers.enumerated().map { ($1.id, $0) }) { first, _ in first }
        m.body = m.body.map { pointIncludes($0, ids) }
        let boundary = "decos-mtom-\(UInt64.random(in: 0...UInt64.max))"
        var body: [UInt8] = []
        // Room for the parts' bytes at once, not a doubling copy per size class of a large buffer.
        body.reserveCapacity(m.buffers.reduce(4096) { $0 + $1.length + 256 })
        func line(_ s: String) { body += Array(s.utf8) + [0x0D, 0x0A] }
        line("--\(boundary)")
        line("Content-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"")
        line("Content-Transfer-Encoding: binary")
        line("Content-ID: <\(rootID)>")
        line("")
        body += XMLWriter.bytes(SOAP.envelope(m, xop: true), declaration: true)
        for (i, b) in m.buffers.enumerated() {
            body += [0x0D, 0x0A]
            line("--\(boundary)")
            line("Content-Type: application/octet-stream")
            line("Content-Transfer-Encoding: binary")
            line("Content-ID: <\(SOAP.xopContentID(i))>")
            line("")
            b.buffer.withUnsafeBytes { body += $0 }
        }
        body += [0x0D, 0x0A]
        line("--\(boundary)--")
        return ("multipart/related; type=\"application/xop+xml\"; start=\"<\(rootID)>\"; start-info=\"application/soap+xml\"; boundary=\"\(boundary)\"", body)
    }

    /// A whole MTOM body read at once (a reply to `decos ctl`), its parts in `pool`.
    public static func decode(contentType: String, body: [UInt8], pool: BufferPool) throws(Fault) -> Message {
        guard let boundary = Gateway.parameter("boundary", of: contentType) else { throw Fault.malformed("multipart/related without a boundary parameter") }
        var reader = try MultipartReader(boundary: boundary, start: Gateway.parameter("start", of: contentType),
                                         limits: .init(rootBytes: SOAP.limits.maxDocumentSize, bufferBytes: Int.max), pool: pool)
        try reader.feed(ByteBuffer(bytes: body))
        return try message(reader.finish(), action: nil)
    }
}
