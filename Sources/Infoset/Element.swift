/// An expanded XML name: a namespace URI (empty for none) and a local name.
public struct QName: Hashable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var local: String

    public init(_ namespace: String, _ local: String) {
        self.namespace = namespace
        self.local = local
    }

    public init(_ local: String) {
        self.namespace = ""
        self.local = local
    }

    public var description: String { namespace.isEmpty ? local : "{\(namespace)}\(local)" }
}

public struct Attribute: Hashable, Sendable {
    public var name: QName
    public var value: String

    public init(_ name: QName, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A child of an element: another element or a run of character data.
public enum Content: Hashable, Sendable {
    case element(Element)
    case text(String)
}

/// An element information item. A value with copy-on-write storage: copying one is a single
/// reference count, so a message body handed between services in one process costs nothing.
public struct Element: Hashable, Sendable {
    final class Storage: @unchecked Sendable {
        var name: QName
        var attributes: [Attribute]
        var children: [Content]
        var sourceOffset: Int

        init(_ name: QName, _ attributes: [Attribute], _ children: [Content], _ sourceOffset: Int) {
            self.name = name
            self.attributes = attributes
            self.children = children
            self.sourceOffset = sourceOffset
        }
    }

    private var storage: Storage

    private mutating func unique() -> Storage {
        if !isKnownUniquelyReferenced(&storage) {
            storage = Storage(storage.name, storage.attributes, storage.children, storage.sourceOffset)
        }
        return storage
    }

    public var name: QName {
        get { storage.name }
        set { unique().name = newValue }
    }

    public var attributes: [Attribute] {
        get { storage.attributes }
        _modify { yield &unique().attributes }
        set { unique().attributes = newValue }
    }

    public var children: [Content] {
        get { storage.children }
        _modify { yield &unique().children }
        set { unique().children = newValue }
    }

    /// Byte offset of the start tag in the document it was read from (-1 if built in code);
    /// provenance for error messages, not part of the value.
    public var sourceOffset: Int {
        get { storage.sourceOffset }
        set { unique().sourceOffset = newValue }
    }

    public static func == (a: Element, b: Element) -> Bool {
        a.storage === b.storage || (a.name == b.name && a.attributes == b.attributes && a.children == b.children)
    }

    public func hash(into h: inout Hasher) {
        h.combine(name)
        h.combine(attributes)
        h.combine(children)
    }

    public init(_ name: QName, attributes: [Attribute] = [], children: [Content] = []) {
        storage = Storage(name, attributes, children, -1)
    }

    /// An element in no namespace.
    public init(_ local: String, attributes: [Attribute] = [], children: [Content] = []) {
        self.init(QName(local), attributes: attributes, children: children)
    }

    /// An element holding only text.
    public init(_ name: QName, text: String) {
        self.init(name, children: text.isEmpty ? [] : [.text(text)])
    }

    public init(_ local: String, text: String) {
        self.init(QName(local), text: text)
    }

    /// The element children, in order.
    public var elements: [Element] {
        children.compactMap { if case .element(let e) = $0 { e } else { nil } }
    }

    /// The first child element with this local name (any namespace).
    public func child(_ local: String) -> Element? {
        for node in children {
            if case .element(let e) = node, e.name.local == local { return e }
        }
        return nil
    }

    /// The first child element with this expanded name.
    public func child(_ name: QName) -> Element? {
        for node in children {
            if case .element(let e) = node, e.name == name { return e }
        }
        return nil
    }

    /// The concatenated character data of this element's own text children.
    public var text: String {
        var result = ""
        for node in children {
            if case .text(let t) = node { result += t }
        }
        return result
    }

    /// This element with the whitespace-only text between its child elements removed, at every
    /// level: what indentation adds. Text of an element without child elements stays as it is
    /// (`<Value>   </Value>` keeps its spaces), and so does any text that is not all whitespace.
    public func withoutWhitespaceBetweenElements() -> Element {
        var e = self
        let hasElements = children.contains { if case .element = $0 { true } else { false } }
        e.children = children.compactMap { node -> Content? in
            switch node {
            case .element(let child): return .element(child.withoutWhitespaceBetweenElements())
            case .text(let t): return hasElements && t.utf8.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D } ? nil : .text(t)
            }
        }
        return e
    }

    /// The value of an attribute with this local name and no namespace.
    public func attribute(_ local: String) -> String? {
        attributes.first { $0.name.namespace.isEmpty && $0.name.local == local }?.value
    }

    public func attribute(_ name: QName) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public mutating func append(_ element: Element) { children.append(.element(element)) }
    public mutating func append(text: String) { children.append(.text(text)) }

    public mutating func setAttribute(_ name: QName, _ value: String) {
        if let i = attributes.firstIndex(where: { $0.name == name }) {
            attributes[i].value = value
        } else {
            attributes.append(Attribute(name, value))
        }
    }
}

/// An element may stand as a property of a `Codable` type (a service's free-form `<State>`);
/// `InfosetEncoder` and `InfosetDecoder` embed it as is. Other coders cannot carry it.
extension Element: Codable {
    struct UnsupportedCoder: Error, CustomStringConvertible {
        var description: String { "an Element can only be coded by InfosetEncoder/InfosetDecoder" }
    }

    public init(from decoder: any Decoder) throws { throw UnsupportedCoder() }
    public func encode(to encoder: any Encoder) throws { throw UnsupportedCoder() }
}
