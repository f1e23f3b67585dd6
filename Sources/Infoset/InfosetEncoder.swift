/// Maps `Encodable` values to infosets so service authors never build elements by hand.
///
/// A struct becomes an element whose children are its properties, each named by its coding key
/// with the first letter upper-cased (`var value` ↔ `<Value>`, the usual XML style);
/// numbers, strings and booleans become text; `nil` leaves the child out; an array property
/// becomes one child per item, each named by the property's key; an `Element` property is
/// embedded inside its key's element.
/// The root element is named after the type unless a name is given.
public struct InfosetEncoder: Sendable {
    public var namespace: String

    public init(namespace: String = "") { self.namespace = namespace }

    public func encode<T: Encodable>(_ value: T, as name: String? = nil) throws -> Element {
        if let element = value as? Element { return element }
        let root = Box(QName(namespace, name ?? InfosetEncoder.rootName(of: T.self)))
        try value.encode(to: _Encoder(box: root, codingPath: [], namespace: namespace))
        return root.element()
    }
}

extension InfosetEncoder {
    /// The root element name of a type's values: the type's name, without generic arguments.
    public static func rootName<T>(of type: T.Type) -> String {
        String(String(describing: type).prefix { $0 != "<" && $0 != "." })
    }
}

/// A mutable element under construction; children are boxes so nested containers can fill them later.
final class Box {
    let name: QName
    var text: String?
    var children: [Box] = []
    var embedded: Element?
    /// An unkeyed container's items are spliced into the parent, each taking the key's name.
    var isList = false

    init(_ name: QName) { self.name = name }

    func element() -> Element {
        if let embedded { return embedded }
        var e = Element(name)
        if let text { e.children.append(.text(text)) }
        for child in children {
            if child.isList {
                for item in child.children { e.children.append(.element(item.element())) }
            } else {
                e.children.append(.element(child.element()))
            }
        }
        return e
    }
}

struct _Encoder: Encoder {
    let box: Box
    let codingPath: [any CodingKey]
    let namespace: String
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(box: box, codingPath: codingPath, namespace: namespace))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        box.isList = true
        return UnkeyedContainer(box: box, codingPath: codingPath, namespace: namespace)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(box: box, codingPath: codingPath, namespace: namespace)
    }
}

/// Encodes one value into `box`: text for scalars, an embedded element, or nested containers.
func encodeValue<T: Encodable>(_ value: T, into box: Box, codingPath: [any CodingKey], namespace: String) throws {
    switch value {
    // An element-typed property holds one element inside its key's element: `<State><CounterState>…`.
    case let e as Element: box.embedded = Element(box.name, children: [.element(e)])
    case let s as String: box.text = s
    case let b as Bool: box.text = b ? "true" : "false"
    case let v as any LosslessStringConvertible & Encodable where isScalar(T.self): box.text = v.description
    default: try value.encode(to: _Encoder(box: box, codingPath: codingPath, namespace: namespace))
    }
}

func isScalar(_ type: Any.Type) -> Bool {
    type == Int.self || type == Int8.self || type == Int16.self || type == Int32.self || type == Int64.self
        || type == UInt.self || type == UInt8.self || type == UInt16.self || type == UInt32.self || type == UInt64.self
        || type == Double.self || type == Float.self || type == String.self || type == Bool.self
}

struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: Box
    let codingPath: [any CodingKey]
    let namespace: String

    func child(_ key: Key) -> Box {
        let c = Box(QName(namespace, elementName(key)))
        box.children.append(c)
        return c
    }

    mutating func encodeNil(forKey key: Key) throws {}
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try encodeValue(value, into: child(key), codingPath: codingPath + [key], namespace: namespace)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(KeyedContainer<NestedKey>(box: child(key), codingPath: codingPath + [key], namespace: namespace))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let c = child(key)
        c.isList = true
        return UnkeyedContainer(box: c, codingPath: codingPath + [key], namespace: namespace)
    }
    mutating func superEncoder() -> any Encoder { _Encoder(box: box, codingPath: codingPath, namespace: namespace) }
    mutating func superEncoder(forKey key: Key) -> any Encoder {
        _Encoder(box: child(key), codingPath: codingPath + [key], namespace: namespace)
    }
}

struct IndexKey: CodingKey {
    var stringValue: String { "Item" }
    var intValue: Int?
    init(_ i: Int) { intValue = i }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

struct UnkeyedContainer: UnkeyedEncodingContainer {
    let box: Box
    let codingPath: [any CodingKey]
    let namespace: String
    var count: Int { box.children.count }

    /// Items of a list take the list's own name (`<Entry>…</Entry><Entry>…</Entry>`).
    func item() -> Box {
        let c = Box(box.name)
        box.children.append(c)
        return c
    }

    mutating func encodeNil() throws { _ = item() }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeValue(value, into: item(), codingPath: codingPath + [IndexKey(count)], namespace: namespace)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(KeyedContainer<NestedKey>(box: item(), codingPath: codingPath, namespace: namespace))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let c = item()
        c.isList = true
        return UnkeyedContainer(box: c, codingPath: codingPath, namespace: namespace)
    }
    mutating func superEncoder() -> any Encoder { _Encoder(box: item(), codingPath: codingPath, namespace: namespace) }
}

struct SingleValueContainer: SingleValueEncodingContainer {
    let box: Box
    let codingPath: [any CodingKey]
    let namespace: String

    mutating func encodeNil() throws {}
    mutating func encode<T: Encodable>(_ value: T) throws {
        try encodeValue(value, into: box, codingPath: codingPath, namespace: namespace)
    }
}

/// The element name for a coding key: `value` → `Value`; names already capitalized stay.
func elementName(_ key: some CodingKey) -> String {
    let s = key.stringValue
    guard let first = s.utf8.first, first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z") else { return s }
    return String(Character(Unicode.Scalar(first - 32))) + s.dropFirst()
}
