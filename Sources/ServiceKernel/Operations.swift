import Infoset

/// One verb a service answers and the bodies it takes and gives: what a WSDL describes of it.
public struct ServiceOperation: Sendable {
    public var verb: Verb
    public var input: Body
    public var output: Body

    /// A request or reply body: none, a typed element, or any element at all.
    public enum Body: Sendable {
        case none
        case any
        /// The root element name and shape of a `Codable` type's values (`InfosetSchema`).
        case element(String, InfosetSchema)

        /// The body of `T`'s values: its root element, with any content when `T` cannot be described.
        public static func of<T: Decodable>(_ type: T.Type) -> Body {
            InfosetSchema.element(of: type).map { .element($0.name, $0.schema) } ?? .element(InfosetEncoder.rootName(of: T.self), .any)
        }
    }

    public init(_ verb: Verb, takes input: Body = .none, returns output: Body = .none) {
        self.verb = verb
        self.input = input
        self.output = output
    }

    public init<I: Decodable, O: Decodable>(_ verb: Verb, takes input: I.Type, returns output: O.Type) {
        self.init(verb, takes: .of(input), returns: .of(output))
    }

    public init<O: Decodable>(_ verb: Verb, returns output: O.Type) {
        self.init(verb, takes: .none, returns: .of(output))
    }
}
