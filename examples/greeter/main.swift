// A service in a few dozen lines: the whole of what an author writes, plus a manifest entry
// (examples/greeter.xml). Built as `decos-greeter`, a decos binary that also knows this contract.
import Decos
import DecosCLI

actor Greeter: Service {
    static let contract = "urn:example:greeter"

    struct GreeterState: Codable { var greeting: String; var greeted: Int }
    struct Greet: Codable { var name: String }
    struct Greeting: Codable { var text: String }
    // What `GET /greeter?wsdl` describes to generated clients.
    static let operations = [
        ServiceOperation(.get, returns: GreeterState.self),
        ServiceOperation(.submit, takes: Greet.self, returns: Greeting.self),
    ]

    @ServiceState var state: GreeterState
    var context: ServiceContext?

    init(config: ServiceConfig) throws {
        _state = ServiceState(wrappedValue: try config.initialState(GreeterState.self) ?? GreeterState(greeting: "Hello", greeted: 0))
    }

    func start(_ context: ServiceContext) async throws { self.context = context }

    func handle(_ request: Request) async throws -> Element? {
        switch request.verb {
        case .get:
            return try $state.infoset()
        case .submit:
            let greet = try request.decode(Greet.self)
            state.greeted += 1
            // Partners come from the manifest: remember each guest in the key-value store.
            if let context, let store = try? context.partner("guests") {
                _ = try await context.call(.upsert, store, body: infoset(KeyValueStore.Entry(key: greet.name, value: "greeted")), for: request)
            }
            return try infoset(Greeting(text: "\(state.greeting), \(greet.name)!"))
        default:
            throw Fault.actionNotSupported(request.verb, context?.path ?? "/greeter")
        }
    }
}

await DecosCLI.main(extra: Contracts([Greeter.self]))
