import Infoset

/// The SOAP 1.2 envelope with WS-Addressing 1.0 headers: how a `Message` looks as XML.
public enum SOAP {
    public static let envelopeNamespace = "http://www.w3.org/2003/05/soap-envelope"
    public static let soap11Namespace = "http://schemas.xmlsoap.org/soap/envelope/"
    public static let addressingNamespace = "http://www.w3.org/2005/08/addressing"
    /// Our own header blocks (buffer references).
    public static let decosNamespace = "urn:decos:soap"
    public static let faultAction = "http://www.w3.org/2005/08/addressing/soap/fault"
    public static let contentType = "application/soap+xml; charset=utf-8"

    static let xmlnsNamespace = "http://www.w3.org/2000/xmlns/"

    static func env(_ local: String) -> QName { QName(envelopeNamespace, local) }
    static func wsa(_ local: String) -> QName { QName(addressingNamespace, local) }

    // MARK: encoding

    /// XOP's namespace: an `xop:Include` stands for bytes carried in another MIME part (MTOM).
    public static let xopNamespace = "http://www.w3.org/2004/08/xop/include"

    /// The envelope of `m`. Its buffers are `<d:Buffer id length>` header blocks holding the bytes
    /// in Base64 — or, with `xop`, an `xop:Include` of the MIME part `cid:ID` that carries them.
    public static func envelope(_ m: Message, xop: Bool = false) -> Element {
        var header = Element(env("Header"))
        if !m.to.isEmpty { header.append(Element(wsa("To"), text: m.to)) }
        header.append(Element(wsa("Action"), text: m.action))
        if let id = m.messageID { header.append(Element(wsa("MessageID"), text: id)) }
        if let r = m.relatesTo { header.append(Element(wsa("RelatesTo"), text: r)) }
        if let r = m.replyTo { header.append(Element(wsa("ReplyTo"), children: [.element(Element(wsa("Address"), text: r))])) }
        if let f = m.from { header.append(Element(wsa("From"), children: [.element(Element(wsa("Address"), text: f))])) }
        for (i, b) in m.buffers.enumerated() {
            // The text binding carries buffer bytes inline; between nodes the data plane moves them.
            let content: Content = xop
                ? .element(Element(QName(xopNamespace, "Include"), attributes: [Attribute(QName("href"), "cid:" + xopContentID(i))]))
                : .text(Base64.encode(b.buffer.bytes))
            header.append(Element(QName(decosNamespace, "Buffer"),
                                  attributes: [Attribute(QName("id"), b.id), Attribute(QName("length"), String(b.length))],
                                  children: [content]))
        }
        var body = Element(env("Body"))
        if let fault = m.fault {
            body.append(faultElement(fault))
        } else if let b = m.body {
            body.append(b)
        }
        // Declared once on the envelope rather than on every header block.
        var declarations = [Attribute(QName(xmlnsNamespace, "wsa"), addressingNamespace)]
        if !m.buffers.isEmpty { declarations.append(Attribute(QName(xmlnsNamespace, "d"), decosNamespace)) }
        return Element(env("Envelope"), attributes: declarations, children: [.element(header), .element(body)])
    }

    public static func encode(_ m: Message) -> [UInt8] {
        XMLWriter.bytes(envelope(m), declaration: true)
    }

    /// The Content-ID of the MIME part that carries a message's buffer number `index` (the buffer's
    /// own id is on its `d:Buffer` header, so any id goes, whatever characters it holds).
    public static func xopContentID(_ index: Int) -> String { "\(index).buffer@decos" }

    static func faultElement(_ f: Fault) -> Element {
        var code = Element(env("Code"), children: [.element(Element(env("Value"), text: "env:" + f.code.rawValue))])
        var fault = Element(env("Fault"))
        if let sub = f.subcode {
            code.append(Element(env("Subcode"), children: [.element(Element(env("Value"), text: "sub:" + sub.local))]))
            fault.attributes.append(Attribute(QName("http://www.w3.org/2000/xmlns/", "sub"), sub.namespace))
        }
        fault.append(code)
        fault.append(Element(env("Reason"), children: [.element(
            Element(env("Text"), attributes: [Attribute(QName("http://www.w3.org/XML/1998/namespace", "lang"), "en")],
                    children: [.text(f.reason)]))]))
        if let d = f.detail { fault.append(Element(env("Detail"), children: [.element(d)])) }
        return fault
    }

    // MARK: decoding

    /// Limits for envelopes read from outside: small names, shallow trees.
    public static let limits = XMLLimits(keepNamespaceDeclarations: true, maxDepth: 64, maxAttributes: 32,
                                         maxNameLength: 128, maxDocumentSize: 64 << 20)

    /// Reads an envelope from bytes. Every failure is a Sender fault whose reason says what was wrong.
    /// `action` is the one the transport gave (the `action` parameter of `application/soap+xml`,
    /// RFC 3902), for an envelope without a `wsa:Action` header.
    public static func decode(_ bytes: [UInt8], limits: XMLLimits = SOAP.limits, action: String? = nil) throws(Fault) -> Message {
        let root: Element
        do {
            root = try XMLReader.parse(bytes, limits: limits)
        } catch {
            throw Fault.malformed("malformed XML at \(error)")
        }
        return try decode(root, action: action)
    }

    public static func decode(_ root: Element, action transportAction: String? = nil) throws(Fault) -> Message {
        guard root.name == env("Envelope") else {
            if root.name == QName(soap11Namespace, "Envelope") {
                throw Fault(.versionMismatch, nil, "SOAP 1.1 envelopes are not supported; use SOAP 1.2 (\(envelopeNamespace))")
            }
            throw Fault(.sender, "NotSOAP", "expected a SOAP 1.2 Envelope in \(envelopeNamespace), got \(root.name)")
        }
        var header: Element?
        var body: Element?
        for child in root.elements {
            switch child.name {
            case env("Header") where header == nil && body == nil: header = child
            case env("Body") where body == nil: body = child
            default: throw Fault.malformed("unexpected \(child.name) in Envelope")
            }
        }
        guard let body else { throw Fault.malformed("Envelope has no Body") }
        let bodyElements = body.elements
        guard bodyElements.count <= 1 else { throw Fault.malformed("Body has \(bodyElements.count) elements; a message carries one") }

        var to = "", action: String?, messageID: String?, relatesTo: String?, replyTo: String?, from: String?
        var buffers: [BufferRef] = []
        for h in header?.elements ?? [] {
            switch h.name {
            case wsa("To"): to = h.text.trimmingXMLSpace()
            case wsa("Action"): action = h.text.trimmingXMLSpace()
            case wsa("MessageID"): messageID = h.text.trimmingXMLSpace()
            case wsa("RelatesTo"): relatesTo = h.text.trimmingXMLSpace()
            case wsa("ReplyTo"): replyTo = h.child(wsa("Address"))?.text.trimmingXMLSpace()
            case wsa("From"): from = h.child(wsa("Address"))?.text.trimmingXMLSpace()
            case QName(decosNamespace, "Buffer"):
                guard let id = h.attribute("id"), !id.isEmpty else { throw Fault.malformed("Buffer header without an id") }
                guard let bytes = Base64.decode(h.text) else { throw Fault.malformed("Buffer \(id) is not valid Base64") }
                if let declared = h.attribute("length"), Int(declared) != bytes.count {
                    throw Fault.malformed("Buffer \(id) declares length \(declared) but holds \(bytes.count) bytes")
                }
                buffers.append(BufferRef(id: id, buffer: DataBuffer(bytes)))
            default:
                let mu = h.attribute(env("mustUnderstand"))
                if mu == "true" || mu == "1" {
                    throw Fault(.mustUnderstand, nil, "header \(h.name) is marked mustUnderstand and is not understood")
                }
            }
        }
        guard let action = action ?? transportAction else {
            throw Fault(code: .sender, subcode: wsa("MessageAddressingHeaderRequired"),
                        reason: "missing wsa:Action header (or an action parameter on the Content-Type)")
        }

        let payload = bodyElements.first
        if action == faultAction || payload?.name == env("Fault") {
            guard let f = payload, f.name == env("Fault") else { throw Fault.malformed("fault action without a Fault") }
            var m = Message(.get, to: to, kind: .fault)
            m.fault = decodeFault(f, in: root)
            m.relatesTo = relatesTo
            return m
        }
        var kind = Message.Kind.request
        var verb = Verb(action: action)
        if verb == nil, action.hasSuffix("Response"), let v = Verb(action: String(action.dropLast(8))) {
            verb = v
            kind = .response
        }
        guard let verb else {
            throw Fault(code: .sender, subcode: wsa("ActionNotSupported"),
                        reason: "unknown action \(action); verbs are \(Verb.actionPrefix)<\(Verb.allCases.map(\.rawValue).joined(separator: "|"))>")
        }
        var m = Message(verb, to: to, body: payload.map(stripNamespaceDeclarations), kind: kind, buffers: buffers)
        m.messageID = messageID
        m.relatesTo = relatesTo
        m.replyTo = replyTo
        m.from = from
        return m
    }

    static func decodeFault(_ f: Element, in root: Element) -> Fault {
        let codeValue = f.child(env("Code"))?.child(env("Value"))?.text.trimmingXMLSpace() ?? ""
        let code = Fault.Code(rawValue: String(codeValue.split(separator: ":").last ?? "")) ?? .receiver
        var subcode: QName?
        if let v = f.child(env("Code"))?.child(env("Subcode"))?.child(env("Value"))?.text.trimmingXMLSpace() {
            let parts = v.split(separator: ":", maxSplits: 1).map(String.init)
            let local = parts.last ?? v
            let prefix = parts.count == 2 ? parts[0] : ""
            subcode = QName(resolve(prefix: prefix, from: [root, f]) ?? Fault.decosNamespace, local)
        }
        let reason = f.child(env("Reason"))?.child(env("Text"))?.text ?? ""
        let detail = f.child(env("Detail"))?.elements.first
        return Fault(code: code, subcode: subcode, reason: reason, detail: detail)
    }

    /// Finds a prefix's namespace among kept declarations, innermost element last.
    static func resolve(prefix: String, from elements: [Element]) -> String? {
        let key = prefix.isEmpty ? "xmlns" : prefix
        for e in elements.reversed() {
            if let uri = e.attribute(QName("http://www.w3.org/2000/xmlns/", key)) { return uri }
        }
        return nil
    }

    /// Declarations were kept only to resolve fault codes; a body is handed on without them.
    static func stripNamespaceDeclarations(_ e: Element) -> Element {
        var e = e
        e.attributes.removeAll { $0.name.namespace == "http://www.w3.org/2000/xmlns/" }
        e.children = e.children.map {
            if case .element(let c) = $0 { .element(stripNamespaceDeclarations(c)) } else { $0 }
        }
        return e
    }
}
