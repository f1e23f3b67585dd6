/// Builds services for contracts: the service loader's catalogue.
public struct Contracts: Sendable {
    public typealias Factory = @Sendable (ServiceConfig) throws -> any Service
    public private(set) var factories: [String: Factory] = [:]
    /// What each contract's type declares it answers (`Service.operations`), by contract.
    public private(set) var operations: [String: [ServiceOperation]] = [:]
    /// The contracts whose services can keep their state on storage (`DurableService`).
    public private(set) var durable: Set<String> = []

    public init() {}

    public init(_ types: [any Service.Type]) {
        for t in types { register(t) }
    }

    public mutating func register(_ type: any Service.Type) {
        factories[type.contract] = { config in try type.init(config: config) }
        operations[type.contract] = type.operations
        if type is any DurableService.Type { durable.insert(type.contract) }
    }

    public mutating func register(contract: String, factory: @escaping Factory) {
        factories[contract] = factory
        operations[contract] = nil
        durable.remove(contract)
    }

    public func merging(_ other: Contracts) -> Contracts {
        var c = self
        c.factories.merge(other.factories) { _, new in new }
        c.operations.merge(other.operations) { _, new in new }
        c.durable.subtract(other.factories.keys)
        c.durable.formUnion(other.durable)
        return c
    }

    public var contracts: [String] { factories.keys.sorted() }
}
