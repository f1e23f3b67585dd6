/// The shape of a `Decodable` type's infoset — each child element's name, whether it may be left
/// out or repeat, and its XSD type — as a WSDL's types section describes a body.
///
/// It is found by decoding the type once from a probe that answers every question and notes what
/// was asked, so it follows the same conventions as `InfosetDecoder` (an optional property is an
/// element that may be missing, an array one element per item named by the property) without
/// anyone writing a schema by hand. An enum is described when it is `CaseIterable` (its cases give
/// the probe a value; their raw strings, the XSD enumeration). A type the probe cannot walk — any
/// other enum decoded from a string the empty string is not, a type nested deeper than 16 levels
/// (a recursive one) — has no schema: `element(of:)` returns nil and a description says "any
/// content" for it.
public indirect enum InfosetSchema: Sendable, Equatable {
    /// Text of an XSD built-in type: `long`, `string`, `boolean`, …
    case scalar(String)
    /// A string, one of these.
    case enumeration([String])
    /// Child elements in this order.
    case sequence([Field])
    /// Any content at all: an `Element` property, a dictionary, or a type the probe could not walk.
    case any

    public struct Field: Sendable, Equatable {
        public var name: String
        public var schema: InfosetSchema
        /// May be left out (an optional property, or a list that may be empty).
        public var optional: Bool
        /// Repeats, once per item (an array property).
        public var repeated: Bool

        public init(name: String, schema: InfosetSchema, optional: Bool = false, repeated: Bool = false) {
            self.name = name
            self.schema = schema
            self.optional = optional
            self.repeated = repeated
        }
    }

    /// The root element name and shape of `T`'s values, or nil when `T` cannot be described.
    public static func element<T: Decodable>(of type: T.Type) -> (name: String, schema: InfosetSchema)? {
        let root = Recording()
        do { _ = try probeValue(T.self, root, depth: 0) } catch { return nil }
        return (InfosetEncoder.rootName(of: T.self), root.schema)
    }
}

/// What the probe learned of one element.
final class Recording {
    var scalar: String?
    var enumeration: [String]?
    var isAny = false
    var repeated = false
    /// Fields in the order first asked, each recording its own element.
    var fields: [(name: String, recording: Recording, optional: Bool)] = []
    /// Names asked about with `contains` or `decodeNil` before being decoded: optionals.
    var askedIfPresent: Set<String> = []

    var schema: InfosetSchema {
        if isAny { return .any }
        if let enumeration { return .enumeration(enumeration) }
        if let scalar { return .scalar(scalar) }
        return .sequence(fields.map { f in
            InfosetSchema.Field(name: f.name, schema: f.recording.schema, optional: f.optional || f.recording.repeated,
                                repeated: f.recording.repeated)
        })
    }

    func field(_ name: String) -> Recording {
        if let f = fields.first(where: { $0.name == name }) { return f.recording }
        let r = Recording()
        fields.append((name, r, askedIfPresent.contains(name)))
        return r
    }
}

struct ProbeFailure: Error {}

/// The XSD built-in type for a scalar the infoset coders write as text, and a value of it.
func xsdScalar(_ type: Any.Type) -> (xsd: String, value: Any)? {
    switch type {
    case is String.Type: ("string", "")
    case is Bool.Type: ("boolean", false)
    case is Int.Type: ("long", 0 as Int)
    case is Int8.Type: ("byte", 0 as Int8)
    case is Int16.Type: ("short", 0 as Int16)
    case is Int32.Type: ("int", 0 as Int32)
    case is Int64.Type: ("long", 0 as Int64)
    case is UInt.Type: ("unsignedLong", 0 as UInt)
    case is UInt8.Type: ("unsignedByte", 0 as UInt8)
    case is UInt16.Type: ("unsignedShort", 0 as UInt16)
    case is UInt32.Type: ("unsignedInt", 0 as UInt32)
    case is UInt64.Type: ("unsignedLong", 0 as UInt64)
    case is Double.Type: ("double", 0 as Double)
    case is Float.Type: ("float", 0 as Float)
    default: nil
    }
}

func probeValue<T: Decodable>(_ type: T.Type, _ r: Recording, depth: Int) throws -> T {
    if T.self == Element.self {
        r.isAny = true
        return Element("Any") as! T
    }
    if let (xsd, value) = xsdScalar(T.self) {
        r.scalar = xsd
        return value as! T
    }
    if let cases = T.self as? any CaseIterable.Type, let (value, names) = anyCase(of: cases) {
        if let names { r.enumeration = names } else { r.isAny = true }
        return value as! T
    }
    guard depth < 16 else { throw ProbeFailure() }
    return try T(from: SchemaProbe(recording: r, depth: depth + 1))
}

/// A case of an enum, and the raw strings of all its cases when it has them.
func anyCase<E: CaseIterable>(of type: E.Type) -> (Any, [String]?)? {
    guard let first = type.allCases.first else { return nil }
    let names = type.allCases.compactMap { ($0 as? any RawRepresentable)?.rawValue as? String }
    return (first, names.count == type.allCases.count ? names : nil)
}

struct SchemaProbe: Decoder {
    let recording: Recording
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedProbe<Key>(recording: recording, depth: depth))
    }

    /// A list's items are the element itself, repeated (see `InfosetDecoder`'s lists).
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        // A list of lists has no element name of its own for its inner items.
        if recording.repeated { recording.isAny = true; throw ProbeFailure() }
        recording.repeated = true
        return ListProbe(probe: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { ValueProbe(probe: self) }
}

struct KeyedProbe<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let recording: Recording
    let depth: Int
    var codingPath: [any CodingKey] { [] }

    /// Asked by types that take whatever keys are there (a dictionary): their children are open.
    var allKeys: [Key] {
        recording.isAny = true
        return []
    }

    func contains(_ key: Key) -> Bool {
        recording.askedIfPresent.insert(elementName(key))
        return true
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        recording.askedIfPresent.insert(elementName(key))
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try probeValue(type, recording.field(elementName(key)), depth: depth)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        recording.askedIfPresent.insert(elementName(key))
        return try probeValue(type, recording.field(elementName(key)), depth: depth)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        KeyedDecodingContainer(KeyedProbe<NestedKey>(recording: recording.field(elementName(key)), depth: depth + 1))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try SchemaProbe(recording: recording.field(elementName(key)), depth: depth + 1).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { SchemaProbe(recording: recording, depth: depth) }
    func superDecoder(forKey key: Key) throws -> any Decoder { SchemaProbe(recording: recording.field(elementName(key)), depth: depth + 1) }
}

/// A list that has exactly one item, so the item's type is walked once.
struct ListProbe: UnkeyedDecodingContainer {
    let probe: SchemaProbe
    var currentIndex = 0
    var codingPath: [any CodingKey] { [] }
    var count: Int? { 1 }
    var isAtEnd: Bool { currentIndex >= 1 }

    mutating func decodeNil() throws -> Bool { false }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        guard !isAtEnd else { throw ProbeFailure() }
        currentIndex += 1
        return try probeValue(type, probe.recording, depth: probe.depth)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        currentIndex += 1
        return try probe.container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        probe.recording.isAny = true
        throw ProbeFailure()
    }

    mutating func superDecoder() throws -> any Decoder {
        currentIndex += 1
        return probe
    }
}

struct ValueProbe: SingleValueDecodingContainer {
    let probe: SchemaProbe
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool { false }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try probeValue(type, probe.recording, depth: probe.depth) }
}
