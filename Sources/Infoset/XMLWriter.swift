/// Writes an infoset as XML text (UTF-8), choosing namespace prefixes itself.
///
/// The element's namespace becomes the default namespace where it changes; namespaces that carry
/// attributes get a prefix. Well-known namespaces keep their customary prefixes for readability.
public enum XMLWriter {
    /// Customary prefixes used when a namespace needs one.
    public static let preferredPrefixes: [String: String] = [
        "http://www.w3.org/2003/05/soap-envelope": "env",
        "http://www.w3.org/2005/08/addressing": "wsa",
        "urn:decos:soap": "d",
        "http://www.w3.org/XML/1998/namespace": "xml",
        "http://schemas.xmlsoap.org/wsdl/": "wsdl",
        "http://schemas.xmlsoap.org/wsdl/soap12/": "soap12",
        "http://www.w3.org/2001/XMLSchema": "xsd",
        "http://www.w3.org/2007/05/addressing/metadata": "wsam",
        "http://www.w3.org/2004/08/xop/include": "xop",
    ]

    public static func string(_ element: Element, declaration: Bool = false) -> String {
        String(decoding: bytes(element, declaration: declaration), as: UTF8.self)
    }

    public static func bytes(_ element: Element, declaration: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(element, declaration: declaration, into: &out)
        return out
    }

    public static func write(_ element: Element, declaration: Bool = false, into out: inout [UInt8]) {
        if declaration { out.append(contentsOf: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>".utf8) }
        var scope = Scope()
        write(element, scope: &scope, into: &out)
    }

    /// Indented text for people: line breaks only between children of elements that hold no text,
    /// so the infoset read back is the same.
    public static func pretty(_ element: Element) -> String {
        var scope = Scope()
        var out: [UInt8] = []
        write(element, scope: &scope, into: &out, indent: 0)
        out.append(0x0A)
        return String(decoding: out, as: UTF8.self)
    }

    struct Scope {
        var defaultNamespace = ""
        var prefixes: [(prefix: String, uri: String)] = [("xml", "http://www.w3.org/XML/1998/namespace")]
        var generated = 0

        func prefix(for uri: String) -> String? {
            for p in prefixes.reversed() where p.uri == uri {
                // Usable only if no inner binding shadows the same prefix.
                if prefixes.last(where: { $0.prefix == p.prefix })?.uri == uri { return p.prefix }
            }
            return nil
        }
    }

    static func write(_ e: Element, scope: inout Scope, into out: inout [UInt8], indent: Int? = nil) {
        let saved = (scope.defaultNamespace, scope.prefixes.count)
        out.append(UInt8(ascii: "<"))
        let nameStart = out.count
        // Element name: prefer an existing prefix for a well-known namespace, else the default namespace.
        var declarations: [(String, String)] = []
        if e.name.namespace == scope.defaultNamespace {
            out.append(contentsOf: e.name.local.utf8)
        } else if let p = scope.prefix(for: e.name.namespace), !e.name.namespace.isEmpty {
            out.append(contentsOf: p.utf8); out.append(UInt8(ascii: ":")); out.append(contentsOf: e.name.local.utf8)
        } else if let p = preferredPrefixes[e.name.namespace], !scope.prefixes.contains(where: { $0.prefix == p }) {
            scope.prefixes.append((p, e.name.namespace))
            declarations.append((p, e.name.namespace))
            out.append(contentsOf: p.utf8); out.append(UInt8(ascii: ":")); out.append(contentsOf: e.name.local.utf8)
        } else {
            scope.defaultNamespace = e.name.namespace
            declarations.append(("", e.name.namespace))
            out.append(contentsOf: e.name.local.utf8)
        }
        let qualifiedName = Array(out[nameStart...])
        var attributeText: [UInt8] = []
        for a in e.attributes where a.name.namespace == xmlnsNamespace {
            // An explicit declaration, for content that names a prefix (a SOAP fault's Value).
            let p = a.name.local == "xmlns" ? "" : a.name.local
            if declarations.contains(where: { $0.0 == p }) { continue }
            if p.isEmpty { scope.defaultNamespace = a.value } else { scope.prefixes.append((p, a.value)) }
            declarations.append((p, a.value))
        }
        for a in e.attributes where a.name.namespace != xmlnsNamespace {
            attributeText.append(UInt8(ascii: " "))
            if !a.name.namespace.isEmpty {
                let p: String
                if let existing = scope.prefix(for: a.name.namespace) {
                    p = existing
                } else {
                    if let preferred = preferredPrefixes[a.name.namespace], !scope.prefixes.contains(where: { $0.prefix == preferred }) {
                        p = preferred
                    } else {
                        scope.generated += 1
                        p = "ns\(scope.generated)"
                    }
                    scope.prefixes.append((p, a.name.namespace))
                    declarations.append((p, a.name.namespace))
                }
                attributeText.append(contentsOf: p.utf8); attributeText.append(UInt8(ascii: ":"))
            }
            attributeText.append(contentsOf: a.name.local.utf8)
            attributeText.append(contentsOf: "=\"".utf8)
            escape(a.value, attribute: true, into: &attributeText)
            attributeText.append(UInt8(ascii: "\""))
        }
        for (p, uri) in declarations {
            out.append(contentsOf: p.isEmpty ? " xmlns=\"".utf8 : " xmlns:".utf8)
            if !p.isEmpty { out.append(contentsOf: p.utf8); out.append(contentsOf: "=\"".utf8) }
            escape(uri, attribute: true, into: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: attributeText)
        if e.children.isEmpty {
            out.append(contentsOf: "/>".utf8)
        } else {
            out.append(UInt8(ascii: ">"))
            let breakLines = indent != nil && !e.children.contains { if case .text = $0 { true } else { false } }
            for child in e.children {
                switch child {
                case .text(let t): escape(t, attribute: false, into: &out)
                case .element(let c):
                    if breakLines { newline(&out, (indent ?? 0) + 1) }
                    write(c, scope: &scope, into: &out, indent: indent.map { $0 + 1 })
                }
            }
            if breakLines { newline(&out, indent ?? 0) }
            out.append(contentsOf: "</".utf8)
            out.append(contentsOf: qualifiedName)
            out.append(UInt8(ascii: ">"))
        }
        scope.defaultNamespace = saved.0
        scope.prefixes.removeLast(scope.prefixes.count - saved.1)
    }

    static func newline(_ out: inout [UInt8], _ depth: Int) {
        out.append(0x0A)
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: depth * 2))
    }

    static func escape(_ s: String, attribute: Bool, into out: inout [UInt8]) {
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "<"): out.append(contentsOf: "&lt;".utf8)
            case UInt8(ascii: ">"): out.append(contentsOf: "&gt;".utf8)
            case UInt8(ascii: "&"): out.append(contentsOf: "&amp;".utf8)
            case UInt8(ascii: "\"") where attribute: out.append(contentsOf: "&quot;".utf8)
            case 0x0D: out.append(contentsOf: "&#xD;".utf8)
            // Newlines in text too: an envelope then fits on one line (the subscription stream relies on it).
            case 0x0A: out.append(contentsOf: "&#xA;".utf8)
            case 0x09 where attribute: out.append(contentsOf: "&#x9;".utf8)
            default: out.append(c)
            }
        }
    }
}
