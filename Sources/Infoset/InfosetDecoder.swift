/// Maps infosets back to `Decodable` values, the inverse of `InfosetEncoder`.
///
/// Children are matched by local name, so a body in any namespace decodes. Errors name the
/// element path that failed (`CounterState/Value: "x" is not a valid Int`).
public struct InfosetDecoder: Sendable {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from element: Element) throws -> T {
        if T.self == Element.self { return element as! T }
        return try T(from: _Decoder(node: .element(element), codingPath: [], path: element.name.local))
    }
}

/// A readable reason a body did not match the expected type.
public struct InfosetDecodingError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

enum DecodingNode {
    case element(Element)
    /// The children of `parent` named `key`: one for a scalar or struct, all of them for a list.
    case children(parent: Element, key: String)

    var items: [Element] {
        switch self {
        case .element(let e): return e.elements
        case .children(let parent, let key): return parent.elements.filter { $0.name.local == key }
        }
    }
}

struct _Decoder: Decoder {
    let node: DecodingNode
    let codingPath: [any CodingKey]
    let path: String
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func fail(_ message: String) -> InfosetDecodingError { InfosetDecodingError(path: path, message: message) }

    func single() throws -> Element {
        switch node {
        case .element(let e): return e
        case .children(let parent, let key):
            guard let e = parent.child(key) else { throw fail("missing element") }
            return e
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedReader<Key>(element: try single(), codingPath: codingPath, path: path))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        ListReader(items: node.items, codingPath: codingPath, path: path)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        ValueReader(decoder: self)
    }
}

func decodeValue<T: Decodable>(_ type: T.Type, _ decoder: _Decoder) throws -> T {
    if T.self == Element.self {
        guard let inner = try decoder.single().elements.first else { throw decoder.fail("expected an element inside") }
        return inner as! T
    }
    if isScalar(T.self) { return try decodeScalar(type, text: try decoder.single().text, decoder) }
    return try T(from: decoder)
}

func decodeScalar<T>(_ type: T.Type, text raw: String, _ decoder: _Decoder) throws -> T {
    let text = raw.trimmingXMLSpace()
    let value: Any?
    switch type {
    case is String.Type: value = raw
    case is Bool.Type: value = text == "true" || text == "1" ? true : text == "false" || text == "0" ? false : nil
    case is Int.Type: value = Int(text)
    case is Int8.Type: value = Int8(text)
    case is Int16.Type: value = Int16(text)
    case is Int32.Type: value = Int32(text)
    case is Int64.Type: value = Int64(text)
    case is UInt.Type: value = UInt(text)
    case is UInt8.Type: value = UInt8(text)
    case is UInt16.Type: value = UInt16(text)
    case is UInt32.Type: value = UInt32(text)
    case is UInt64.Type: value = UInt64(text)
    case is Double.Type: value = Double(text)
    case is Float.Type: value = Float(text)
    default: value = nil
    }
    guard let v = value as? T else { throw decoder.fail("\"\(raw)\" is not a valid \(T.self)") }
    return v
}

extension String {
    /// Without leading and trailing XML whitespace (space, tab, CR, LF).
    public func trimmingXMLSpace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let element: Element
    let codingPath: [any CodingKey]
    let path: String

    var allKeys: [Key] {
        var seen = Set<String>()
        return element.elements.compactMap { seen.insert($0.name.local).inserted ? Key(stringValue: $0.name.local) : nil }
    }

    func contains(_ key: Key) -> Bool { element.child(elementName(key)) != nil }

    func decoder(_ key: Key) -> _Decoder {
        let name = elementName(key)
        return _Decoder(node: .children(parent: element, key: name), codingPath: codingPath + [key], path: path + "/" + name)
    }

    func decodeNil(forKey key: Key) throws -> Bool { !contains(key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeValue(type, decoder(key))
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key) else { return nil }
        return try decodeValue(type, decoder(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder(key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { _Decoder(node: .element(element), codingPath: codingPath, path: path) }
    func superDecoder(forKey key: Key) throws -> any Decoder { decoder(key) }
}

struct ListReader: UnkeyedDecodingContainer {
    let items: [Element]
    let codingPath: [any CodingKey]
    let path: String
    var currentIndex = 0

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> _Decoder {
        guard !isAtEnd else { throw InfosetDecodingError(path: path, message: "fewer items than expected") }
        defer { currentIndex += 1 }
        return _Decoder(node: .element(items[currentIndex]), codingPath: codingPath + [IndexKey(currentIndex)],
                        path: "\(path)[\(currentIndex + 1)]")
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return true }
        if items[currentIndex].children.isEmpty { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type, try next()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

struct ValueReader: SingleValueDecodingContainer {
    let decoder: _Decoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool {
        guard let e = try? decoder.single() else { return true }
        return e.children.isEmpty
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeValue(type, decoder) }
}
