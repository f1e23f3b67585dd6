/// Limits a reader enforces; each breach is an `XMLError` with the line and column where it happened.
public struct XMLLimits: Sendable, Hashable {
    /// Keep `xmlns` declarations as attributes in the `http://www.w3.org/2000/xmlns/` namespace,
    /// for formats (SOAP fault codes) whose text content holds qualified names.
    public var keepNamespaceDeclarations = false
    public var maxDepth: Int
    public var maxAttributes: Int
    public var maxNameLength: Int
    public var maxDocumentSize: Int

    public init(keepNamespaceDeclarations: Bool = false, maxDepth: Int = 128, maxAttributes: Int = 64,
                maxNameLength: Int = 256, maxDocumentSize: Int = 16 << 20) {
        self.keepNamespaceDeclarations = keepNamespaceDeclarations
        self.maxDepth = maxDepth
        self.maxAttributes = maxAttributes
        self.maxNameLength = maxNameLength
        self.maxDocumentSize = maxDocumentSize
    }

    public static let `default` = XMLLimits()
}

public struct XMLError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case malformed      // not well-formed XML
        case forbidden      // well-formed but refused: DOCTYPE, entities, processing instructions
        case limit          // a configured limit was exceeded
    }
    public var kind: Kind
    public var message: String
    public var line: Int
    public var column: Int

    public init(_ kind: Kind, _ message: String, line: Int, column: Int) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}

/// A strict, non-validating XML 1.0 reader with namespaces over UTF-8 bytes.
///
/// Refuses what an appliance never needs and an attacker loves: DOCTYPE (and with it every
/// entity declaration), processing instructions other than the XML declaration, and undefined
/// entity references. Whitespace-only text is dropped; other text is kept as is.
public enum XMLReader {
    public static func parse(_ text: String, limits: XMLLimits = .default) throws(XMLError) -> Element {
        try parse(Array(text.utf8), limits: limits)
    }

    public static func parse(_ bytes: [UInt8], limits: XMLLimits = .default) throws(XMLError) -> Element {
        try bytes.withUnsafeBufferPointer { (buf) throws(XMLError) -> Element in try parse(buf, limits: limits) }
    }

    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>, limits: XMLLimits = .default) throws(XMLError) -> Element {
        var parser = Parser(bytes, limits: limits)
        return try parser.document()
    }

    /// Line and column (both from 1) of a byte offset, for messages about an element's `sourceOffset`.
    public static func lineColumn(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for c in bytes.prefix(max(0, offset)) {
            if c == 0x0A { line += 1; column = 1 } else if c & 0xC0 != 0x80 { column += 1 }
        }
        return (line, column)
    }
}

private let xmlNamespace = "http://www.w3.org/XML/1998/namespace"
let xmlnsNamespace = "http://www.w3.org/2000/xmlns/"

private struct Parser {
    let b: UnsafeBufferPointer<UInt8>
    let limits: XMLLimits
    var pos = 0
    /// In-scope namespace bindings, innermost last; "" is the default namespace.
    var bindings: [(prefix: String, uri: String)] = [("xml", xmlNamespace)]

    struct Open {
        var element: Element
        var rawName: Slice<UnsafeBufferPointer<UInt8>>
        var bindingCount: Int
        var start: Int
    }

    init(_ b: UnsafeBufferPointer<UInt8>, limits: XMLLimits) {
        self.b = b
        self.limits = limits
    }

    // MARK: errors

    func error(_ kind: XMLError.Kind, _ message: String, at offset: Int? = nil) -> XMLError {
        let end = min(offset ?? pos, b.count)
        var line = 1, column = 1, i = 0
        while i < end {
            let c = b[i]
            if c == 0x0A { line += 1; column = 1 } else if c & 0xC0 != 0x80 { column += 1 }
            i += 1
        }
        return XMLError(kind, message, line: line, column: column)
    }

    // MARK: bytes

    var atEnd: Bool { pos >= b.count }
    func peek(_ ahead: Int = 0) -> UInt8? { pos + ahead < b.count ? b[pos + ahead] : nil }

    func looking(at literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= b.count else { return false }
        let p = literal.utf8Start
        for i in 0..<n where b[pos + i] != p[i] { return false }
        return true
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

    @discardableResult
    mutating func skipSpace() -> Bool {
        let start = pos
        while pos < b.count, Parser.isSpace(b[pos]) { pos += 1 }
        return pos > start
    }

    mutating func expect(_ c: UInt8, _ what: String) throws(XMLError) {
        guard pos < b.count else { throw error(.malformed, "unexpected end of document, expected \(what)") }
        guard b[pos] == c else { throw error(.malformed, "expected \(what)") }
        pos += 1
    }

    /// Checks the whole input is UTF-8 with only characters XML allows, once, up front.
    func validateCharacters() throws(XMLError) {
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            if c < 0x80 {
                if c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D {
                    throw error(.malformed, "control character U+\(hex(UInt32(c))) is not allowed in XML", at: i)
                }
                i += 1
                continue
            }
            var scalar: UInt32
            var len: Int
            if c & 0xE0 == 0xC0 { scalar = UInt32(c & 0x1F); len = 2 }
            else if c & 0xF0 == 0xE0 { scalar = UInt32(c & 0x0F); len = 3 }
            else if c & 0xF8 == 0xF0 { scalar = UInt32(c & 0x07); len = 4 }
            else { throw error(.malformed, "invalid UTF-8 byte 0x\(hex(UInt32(c)))", at: i) }
            guard i + len <= n else { throw error(.malformed, "truncated UTF-8 sequence", at: i) }
            for k in 1..<len {
                let cc = b[i + k]
                guard cc & 0xC0 == 0x80 else { throw error(.malformed, "invalid UTF-8 sequence", at: i) }
                scalar = scalar << 6 | UInt32(cc & 0x3F)
            }
            let minimum: UInt32 = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000
            guard scalar >= minimum, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar),
                  scalar != 0xFFFE, scalar != 0xFFFF else {
                throw error(.malformed, "invalid UTF-8 sequence", at: i)
            }
            i += len
        }
    }

    // MARK: document

    mutating func document() throws(XMLError) -> Element {
        guard b.count <= limits.maxDocumentSize else {
            throw XMLError(.limit, "document of \(b.count) bytes exceeds the limit of \(limits.maxDocumentSize)", line: 1, column: 1)
        }
        try validateCharacters()
        if looking(at: "\u{FEFF}") { pos += 3 }
        if looking(at: "<?xml") && (peek(5).map(Parser.isSpace) ?? false || peek(5) == UInt8(ascii: "?")) {
            try xmlDeclaration()
        }
        try misc()
        guard !atEnd else { throw error(.malformed, "no root element") }
        guard peek() == UInt8(ascii: "<") else { throw error(.malformed, "text before the root element") }
        let root = try rootElement()
        try misc()
        guard atEnd else { throw error(.malformed, "content after the root element") }
        return root
    }

    mutating func xmlDeclaration() throws(XMLError) {
        let start = pos
        pos += 5
        guard let close = find("?>") else { throw error(.malformed, "unterminated XML declaration") }
        let decl = String(decoding: UnsafeBufferPointer(rebasing: b[pos..<close]), as: UTF8.self)
        pos = close + 2
        if let range = decl.firstRange(of: "encoding") {
            let rest = decl[range.upperBound...].drop { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "'" }
            let name = rest.prefix { $0 != "\"" && $0 != "'" }.lowercased()
            guard name == "utf-8" || name == "utf8" else {
                throw error(.malformed, "encoding \"\(name)\" is not supported; documents must be UTF-8", at: start)
            }
        }
        guard decl.contains("version") else { throw error(.malformed, "XML declaration without version", at: start) }
    }

    func find(_ literal: StaticString) -> Int? {
        var i = pos
        let n = literal.utf8CodeUnitCount
        let p = literal.utf8Start
        outer: while i + n <= b.count {
            if b[i] == p[0] {
                for k in 1..<n where b[i + k] != p[k] { i += 1; continue outer }
                return i
            }
            i += 1
        }
        return nil
    }

    /// Whitespace and comments outside the root; DOCTYPE and processing instructions are refused.
    mutating func misc() throws(XMLError) {
        while true {
            skipSpace()
            if looking(at: "<!--") { try comment() }
            else if looking(at: "<!DOCTYPE") { throw error(.forbidden, "DOCTYPE is not allowed") }
            else if looking(at: "<?") { throw error(.forbidden, "processing instructions are not allowed") }
            else { return }
        }
    }

    mutating func comment() throws(XMLError) {
        let start = pos
        pos += 4
        guard let close = find("--") else { throw error(.malformed, "unterminated comment", at: start) }
        guard close + 2 < b.count, b[close + 2] == UInt8(ascii: ">") else {
            throw error(.malformed, "\"--\" is not allowed inside a comment", at: close)
        }
        pos = close + 3
    }

    // MARK: names

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || c == 0x3A || c >= 0x80
    }

    static func isNameChar(_ c: UInt8) -> Bool {
        isNameStart(c) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
    }

    mutating func name() throws(XMLError) -> Slice<UnsafeBufferPointer<UInt8>> {
        let start = pos
        guard let c = peek(), Parser.isNameStart(c) else { throw error(.malformed, "expected a name") }
        pos += 1
        while pos < b.count, Parser.isNameChar(b[pos]) { pos += 1 }
        guard pos - start <= limits.maxNameLength else {
            throw error(.limit, "name longer than \(limits.maxNameLength) bytes", at: start)
        }
        return b[start..<pos]
    }

    func string(_ s: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: s), as: UTF8.self)
    }

    /// Splits a raw name at its colon.
    func split(_ raw: Slice<UnsafeBufferPointer<UInt8>>, at offset: Int) throws(XMLError) -> (prefix: String, local: String) {
        guard let colon = raw.firstIndex(of: UInt8(ascii: ":")) else { return ("", string(raw)) }
        let prefix = raw[raw.startIndex..<colon], local = raw[(colon + 1)...]
        guard !prefix.isEmpty, let first = local.first, Parser.isNameStart(first), first != UInt8(ascii: ":"),
              !local.contains(UInt8(ascii: ":")) else {
            throw error(.malformed, "malformed qualified name \"\(string(raw))\"", at: offset)
        }
        return (string(prefix), string(local))
    }

    func resolve(_ prefix: String, at offset: Int) throws(XMLError) -> String {
        for binding in bindings.reversed() where binding.prefix == prefix { return binding.uri }
        if prefix.isEmpty { return "" }
        throw error(.malformed, "namespace prefix \"\(prefix)\" is not declared", at: offset)
    }

    // MARK: elements

    mutating func rootElement() throws(XMLError) -> Element {
        var stack: [Open] = []
        var pending: [UInt8] = []
        var pendingStart = pos
        while true {
            guard pos < b.count else {
                let open = stack.last.map { "<\(string($0.rawName))>" } ?? "element"
                throw error(.malformed, "unexpected end of document inside \(open)")
            }
            let c = b[pos]
            if c != UInt8(ascii: "<") {
                if pending.isEmpty { pendingStart = pos }
                switch c {
                case UInt8(ascii: "&"):
                    try reference(into: &pending)
                case 0x0D:
                    // CR and CR LF both become LF (XML 1.0 §2.11).
                    pending.append(0x0A)
                    pos += 1
                    if peek() == 0x0A { pos += 1 }
                default:
                    if c == UInt8(ascii: ">"), pos >= 2, b[pos - 1] == UInt8(ascii: "]"), b[pos - 2] == UInt8(ascii: "]") {
                        throw error(.malformed, "\"]]>\" is not allowed in text")
                    }
                    // Copy the run of ordinary characters in one go.
                    let start = pos
                    pos += 1
                    while pos < b.count {
                        let d = b[pos]
                        if d == UInt8(ascii: "<") || d == UInt8(ascii: "&") || d == 0x0D || d == UInt8(ascii: ">") { break }
                        pos += 1
                    }
                    pending.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<pos]))
                }
                continue
            }
            if looking(at: "<![CDATA[") {
                let start = pos
                pos += 9
                guard let close = find("]]>") else { throw error(.malformed, "unterminated CDATA section", at: start) }
                if pending.isEmpty { pendingStart = start }
                var i = pos
                while i < close {
                    if b[i] == 0x0D {
                        pending.append(0x0A)
                        if i + 1 < close, b[i + 1] == 0x0A { i += 1 }
                    } else {
                        pending.append(b[i])
                    }
                    i += 1
                }
                pos = close + 3
                continue
            }
            if looking(at: "<!--") { try comment(); continue }
            if looking(at: "<!") { throw error(.forbidden, "DOCTYPE and markup declarations are not allowed") }
            if looking(at: "<?") { throw error(.forbidden, "processing instructions are not allowed") }
            // An element boundary: settle the pending text first.
            if !pending.isEmpty {
                guard !stack.isEmpty else { throw error(.malformed, "text outside the root element", at: pendingStart) }
                // Every character is kept, whitespace-only text too (`<Value>   </Value>` is three
                // spaces); formats in which whitespace between elements means nothing skip it there.
                stack[stack.count - 1].element.children.append(.text(String(decoding: pending, as: UTF8.self)))
                pending.removeAll(keepingCapacity: true)
            }
            if peek(1) == UInt8(ascii: "/") {
                let start = pos
                pos += 2
                let raw = try name()
                skipSpace()
                try expect(UInt8(ascii: ">"), "\">\" to close the end tag")
                guard let open = stack.popLast() else { throw error(.malformed, "end tag without a start tag", at: start) }
                guard raw.elementsEqual(open.rawName) else {
                    throw error(.malformed, "end tag </\(string(raw))> does not match <\(string(open.rawName))>", at: start)
                }
                bindings.removeLast(bindings.count - open.bindingCount)
                if stack.isEmpty { return open.element }
                stack[stack.count - 1].element.children.append(.element(open.element))
            } else {
                guard stack.count < limits.maxDepth else {
                    throw error(.limit, "elements nested deeper than \(limits.maxDepth)")
                }
                let (open, empty) = try startTag()
                if empty {
                    bindings.removeLast(bindings.count - open.bindingCount)
                    if stack.isEmpty { return open.element }
                    stack[stack.count - 1].element.children.append(.element(open.element))
                } else {
                    stack.append(open)
                }
            }
        }
    }

    /// Parses `<name attr="v" ...>` or `/>`; returns the element with names resolved.
    mutating func startTag() throws(XMLError) -> (Open, empty: Bool) {
        let start = pos
        pos += 1
        let rawName = try name()
        var raw: [(name: Slice<UnsafeBufferPointer<UInt8>>, value: String, at: Int)] = []
        let bindingCount = bindings.count
        var empty = false
        while true {
            let hadSpace = skipSpace()
            guard let c = peek() else { throw error(.malformed, "unexpected end of document in start tag", at: start) }
            if c == UInt8(ascii: ">") { pos += 1; break }
            if c == UInt8(ascii: "/") {
                pos += 1
                try expect(UInt8(ascii: ">"), "\">\" after \"/\"")
                empty = true
                break
            }
            guard hadSpace else { throw error(.malformed, "expected whitespace before an attribute") }
            let at = pos
            let attrName = try name()
            skipSpace()
            try expect(UInt8(ascii: "="), "\"=\" after attribute name")
            skipSpace()
            let value = try attributeValue()
            guard raw.count < limits.maxAttributes else {
                throw error(.limit, "more than \(limits.maxAttributes) attributes", at: at)
            }
            for other in raw where other.name.elementsEqual(attrName) {
                throw error(.malformed, "duplicate attribute \"\(string(attrName))\"", at: at)
            }
            if attrName.elementsEqual("xmlns".utf8) {
                guard value != xmlNamespace, value != xmlnsNamespace else {
                    throw error(.malformed, "reserved namespace cannot be the default", at: at)
                }
                bindings.append(("", value))
                if limits.keepNamespaceDeclarations { raw.append((attrName, value, at)) }
            } else if attrName.starts(with: "xmlns:".utf8) {
                let prefix = string(attrName.dropFirst(6))
                guard !value.isEmpty else { throw error(.malformed, "namespace prefix \"\(prefix)\" bound to an empty URI", at: at) }
                guard prefix != "xmlns", prefix != "xml" || value == xmlNamespace,
                      value != xmlnsNamespace, prefix == "xml" || value != xmlNamespace else {
                    throw error(.malformed, "reserved namespace prefix or URI in \"\(string(attrName))\"", at: at)
                }
                bindings.append((prefix, value))
                if limits.keepNamespaceDeclarations { raw.append((attrName, value, at)) }
            } else {
                raw.append((attrName, value, at))
            }
        }
        let (prefix, local) = try split(rawName, at: start + 1)
        var element = Element(QName(try resolve(prefix, at: start + 1), local))
        element.sourceOffset = start
        var open = Open(element: element, rawName: rawName, bindingCount: bindingCount, start: start)
        if !raw.isEmpty {
            var attributes: [Attribute] = []
            attributes.reserveCapacity(raw.count)
            for a in raw {
                let (p, l) = try split(a.name, at: a.at)
                let name = p == "xmlns" || (p.isEmpty && l == "xmlns")
                    ? QName(xmlnsNamespace, l) : QName(p.isEmpty ? "" : try resolve(p, at: a.at), l)
                if attributes.contains(where: { $0.name == name }) {
                    throw error(.malformed, "duplicate attribute \(name)", at: a.at)
                }
                attributes.append(Attribute(name, a.value))
            }
            open.element.attributes = attributes
        }
        return (open, empty)
    }

    mutating func attributeValue() throws(XMLError) -> String {
        guard let quote = peek(), quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
            throw error(.malformed, "attribute value must be quoted")
        }
        pos += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek() else { throw error(.malformed, "unterminated attribute value") }
            if c == quote { pos += 1; break }
            switch c {
            case UInt8(ascii: "<"): throw error(.malformed, "\"<\" is not allowed in an attribute value")
            case UInt8(ascii: "&"): try reference(into: &out)
            case 0x09, 0x0A: out.append(0x20); pos += 1
            case 0x0D:
                out.append(0x20); pos += 1
                if peek() == 0x0A { pos += 1 }
            default:
                let start = pos
                pos += 1
                while pos < b.count {
                    let d = b[pos]
                    if d == quote || d == UInt8(ascii: "<") || d == UInt8(ascii: "&") || d < 0x20 { break }
                    pos += 1
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<pos]))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `&lt;` and the other four predefined entities, `&#N;` and `&#xH;`. Nothing else.
    mutating func reference(into out: inout [UInt8]) throws(XMLError) {
        let start = pos
        pos += 1
        var end = pos
        while end < b.count, b[end] != UInt8(ascii: ";"), end - pos < 16 { end += 1 }
        guard end < b.count, b[end] == UInt8(ascii: ";") else {
            throw error(.malformed, "\"&\" must start a reference such as &amp;", at: start)
        }
        let body = b[pos..<end]
        pos = end + 1
        if body.first == UInt8(ascii: "#") {
            var digits = body.dropFirst()
            var radix: UInt32 = 10
            if digits.first == UInt8(ascii: "x") { radix = 16; digits = digits.dropFirst() }
            guard !digits.isEmpty else { throw error(.malformed, "empty character reference", at: start) }
            var value: UInt32 = 0
            for d in digits {
                let v: UInt32
                switch d {
                case 0x30...0x39: v = UInt32(d - 0x30)
                case 0x61...0x66 where radix == 16: v = UInt32(d - 0x61 + 10)
                case 0x41...0x46 where radix == 16: v = UInt32(d - 0x41 + 10)
                default: throw error(.malformed, "bad digit in character reference", at: start)
                }
                value = value &* radix &+ v
                guard value <= 0x10FFFF else { throw error(.malformed, "character reference out of range", at: start) }
            }
            guard value == 0x9 || value == 0xA || value == 0xD || (0x20...0xD7FF).contains(value)
                    || (0xE000...0xFFFD).contains(value) || (0x10000...0x10FFFF).contains(value),
                  let scalar = Unicode.Scalar(value) else {
                throw error(.malformed, "character reference &#\(value); is not an XML character", at: start)
            }
            out.append(contentsOf: String(Character(scalar)).utf8)
            return
        }
        switch string(body) {
        case "lt": out.append(UInt8(ascii: "<"))
        case "gt": out.append(UInt8(ascii: ">"))
        case "amp": out.append(UInt8(ascii: "&"))
        case "apos": out.append(UInt8(ascii: "'"))
        case "quot": out.append(UInt8(ascii: "\""))
        case let name: throw error(.forbidden, "entity \"&\(name);\" is not defined (only the five predefined entities are)", at: start)
        }
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}
