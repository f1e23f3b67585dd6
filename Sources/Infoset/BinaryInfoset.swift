/// The binary infoset encoding: how an element travels between nodes (no XML text on the wire).
///
///     infoset  := element
///     element  := name(namespace) name(local) varint(attributeCount) attribute* varint(childCount) child*
///     attribute:= name(namespace) name(local) string
///     child    := 0x01 element | 0x02 string
///     name     := varint(0) string        a name not seen before in this document; it joins the table
///               | varint(n)               the table's n-th name (from 1)
///     string   := varint(byteCount) utf8-bytes
///
/// A name repeated across many elements costs its bytes once and one or two bytes after that; the
/// table is built as the document is written and read, so both take one pass. Documented with the
/// wire format in docs/wire.md.
public enum BinaryInfoset {
    public static func encode(_ e: Element, into w: inout ByteWriter) {
        var names = Names(findable: true)
        write(e, names: &names, into: &w)
    }

    public static func encode(_ e: Element) -> [UInt8] {
        var w = ByteWriter()
        encode(e, into: &w)
        return w.bytes
    }

    public static func decode(_ r: inout ByteReader, maxDepth: Int = 128) throws(ByteReader.Failure) -> Element {
        var names = Names(findable: false)
        return try element(&r, names: &names, depth: 1, maxDepth: maxDepth)
    }

    private static func write(_ name: String, names: inout Names, into w: inout ByteWriter) {
        if let i = names.find(name) {
            w.varint(UInt64(i + 1))
        } else {
            w.byte(0)
            w.string(name)
            names.append(name)
        }
    }

    private static func write(_ e: Element, names: inout Names, into w: inout ByteWriter) {
        write(e.name.namespace, names: &names, into: &w)
        write(e.name.local, names: &names, into: &w)
        let attributes = e.attributes
        w.varint(UInt64(attributes.count))
        for a in attributes {
            write(a.name.namespace, names: &names, into: &w)
            write(a.name.local, names: &names, into: &w)
            w.string(a.value)
        }
        let children = e.children
        w.varint(UInt64(children.count))
        for c in children {
            switch c {
            case .element(let x): w.byte(1); write(x, names: &names, into: &w)
            case .text(let t): w.byte(2); w.string(t)
            }
        }
    }

    private static func name(_ r: inout ByteReader, names: inout Names) throws(ByteReader.Failure) -> String {
        let i = try r.varint()
        if i == 0 {
            let n = try r.string()
            names.append(n)
            return n
        }
        guard i <= UInt64(names.count) else { throw r.fail("name \(i) is not in the table of \(names.count) names") }
        return names[Int(i) - 1]
    }

    private static func element(_ r: inout ByteReader, names: inout Names, depth: Int, maxDepth: Int) throws(ByteReader.Failure) -> Element {
        guard depth <= maxDepth else { throw r.fail("elements nested deeper than \(maxDepth)") }
        let ns = try name(&r, names: &names), local = try name(&r, names: &names)
        guard !local.isEmpty else { throw r.fail("element with an empty name") }
        var e = Element(QName(ns, local))
        let attributes = try r.count()
        if attributes > 0 {
            var list: [Attribute] = []
            // A count is bounded by the bytes left, but an attribute or child takes far more memory
            // than its two bytes on the wire, at every level: reserve a little, let real content grow it.
            list.reserveCapacity(min(attributes, 16))
            for _ in 0..<attributes {
                let ans = try name(&r, names: &names), alocal = try name(&r, names: &names)
                list.append(Attribute(QName(ans, alocal), try r.string()))
            }
            e.attributes = list
        }
        let children = try r.count()
        if children > 0 {
            var list: [Content] = []
            list.reserveCapacity(min(children, 16))
            for _ in 0..<children {
                switch try r.byte() {
                case 1: list.append(.element(try element(&r, names: &names, depth: depth + 1, maxDepth: maxDepth)))
                case 2: list.append(.text(try r.string()))
                case let k: throw r.fail("unknown child kind \(k)")
                }
            }
            e.children = list
        }
        return e
    }

    /// One document's names in order of first use. A small message body's first four stay inline
    /// (no allocation; more inline slots cost more to set up and tear down than they save) and are
    /// found by comparing; the rest spill into an array, found through a dictionary when the writer
    /// needs to find them in a large document.
    private struct Names {
        private var first = InlineArray<4, String>(repeating: "")
        private var rest: [String] = []
        private var index: [String: Int]?
        private let findable: Bool
        private(set) var count = 0

        init(findable: Bool) { self.findable = findable }

        subscript(i: Int) -> String { i < 4 ? first[i] : rest[i - 4] }

        mutating func append(_ s: String) {
            if count < 4 { first[count] = s } else { rest.append(s) }
            index?[s] = count
            count += 1
            if findable && index == nil && count > 16 {
                var d: [String: Int] = [:]
                for i in 0..<count { d[self[i]] = i }
                index = d
            }
        }

        func find(_ s: String) -> Int? {
            if let index { return index[s] }
            for i in 0..<min(count, 4) where first[i] == s { return i }
            if let j = rest.firstIndex(of: s) { return 4 + j }
            return nil
        }
    }
}

/// Appends integers and strings to a byte array, little-endian and LEB128 varints.
public struct ByteWriter: Sendable {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 128) { bytes.reserveCapacity(capacity) }

    public mutating func byte(_ b: UInt8) { bytes.append(b) }

    public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }

    /// Overwrites four bytes written before (a length known only once what follows is written).
    public mutating func setU32(_ v: UInt32, at offset: Int) {
        withUnsafeBytes(of: v.bigEndian) { bytes.replaceSubrange(offset..<offset + 4, with: $0) }
    }

    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            varint(UInt64(u.count))
            bytes.append(contentsOf: u)
        }
    }

    public mutating func data(_ d: some Collection<UInt8>) {
        varint(UInt64(d.count))
        bytes.append(contentsOf: d)
    }

    public mutating func optionalString(_ s: String?) {
        if let s { byte(1); string(s) } else { byte(0) }
    }
}

/// Reads what `ByteWriter` wrote; every read checks the bytes remaining, so truncated or hostile
/// input is an error, never a crash or a huge allocation.
public struct ByteReader: Sendable {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var offset: Int
        public var description: String { "at byte \(offset): \(message)" }
    }

    public let bytes: [UInt8]
    public private(set) var offset: Int
    /// Where this reader's bytes start and end in `bytes`, which may hold more (the other frames
    /// of one socket read).
    public let start: Int
    public let end: Int

    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.start = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset >= end }

    public func fail(_ message: String) -> Failure { Failure(message: message, offset: offset - start) }

    public mutating func byte() throws(Failure) -> UInt8 {
        guard offset < end else { throw fail("truncated: expected a byte") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func varint() throws(Failure) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64 else { throw fail("varint longer than 64 bits") }
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// A count of things that each take at least one byte: never more than the bytes left.
    public mutating func count() throws(Failure) -> Int {
        let n = try varint()
        guard n <= UInt64(remaining) else { throw fail("count \(n) exceeds the \(remaining) bytes left") }
        return Int(n)
    }

    public mutating func u32() throws(Failure) -> UInt32 { try bigEndian() }
    public mutating func u64() throws(Failure) -> UInt64 { try bigEndian() }

    private mutating func bigEndian<T: FixedWidthInteger & UnsignedInteger>() throws(Failure) -> T {
        let n = T.bitWidth / 8
        guard remaining >= n else { throw fail("truncated: expected \(n) bytes") }
        var v: T = 0
        for i in 0..<n { v = v << 8 | T(bytes[offset + i]) }
        offset += n
        return v
    }

    public mutating func data() throws(Failure) -> [UInt8] {
        let n = try count()
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    public mutating func string() throws(Failure) -> String {
        let n = try count()
        let at = offset
        let s = bytes.withUnsafeBufferPointer { b -> String? in
            let p = UnsafeBufferPointer(rebasing: b[at..<at + n])
            // ASCII, nearly every name and URI, is valid UTF-8 as it is; the generic validator is slow.
            return isASCII(p) ? String(decoding: p, as: UTF8.self) : String(validating: p, as: UTF8.self)
        }
        guard let s else { throw fail("string is not UTF-8") }
        offset += n
        return s
    }

    public mutating func optionalString() throws(Failure) -> String? {
        switch try byte() {
        case 0: return nil
        case 1: return try string()
        case let k: throw fail("bad optional marker \(k)")
        }
    }
}

/// True if no byte has its high bit set, looked at eight bytes at a time.
func isASCII(_ p: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let base = p.baseAddress else { return true }
    var i = 0
    while i + 8 <= p.count {
        if UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { return false }
        i += 8
    }
    while i < p.count {
        if base[i] >= 0x80 { return false }
        i += 1
    }
    return true
}
