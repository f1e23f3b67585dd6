import NIOHTTP1

/// What a request to the gateway asks for, read from its method, path and query alone; one
/// handler in `Gateway.respond` answers each.
enum Route: Equatable {
    /// `GET /?events`: the console's live stream.
    case events
    /// `GET /?nodes` (`&pages`): the console's table of nodes.
    case nodesTable(pages: Bool)
    /// `GET /` (`?node=NAME`): the console page.
    case console(node: String?)
    /// `GET /metrics`: Prometheus text.
    case metrics
    /// `GET /path?wsdl`: the service's WSDL.
    case wsdl
    /// `GET /path?view`: the service's state as a page.
    case view
    /// `GET /path?fragment`: the service's state as a fragment of the console.
    case fragment
    /// `GET /path`: the service's state as XML.
    case state
    /// `POST /path?form`: a console form.
    case form
    /// `POST /path`: a SOAP envelope, or MTOM.
    case envelope
    /// Any other method.
    case notAllowed

    init(_ method: HTTPMethod, path: String, query items: [(name: String, value: String)]) {
        switch method {
        case .GET, .HEAD:
            let query = items.map { $0.name.lowercased() }
            if path == "/" {
                if query.contains("events") { self = .events }
                else if query.contains("nodes") { self = .nodesTable(pages: query.contains("pages")) }
                else { self = .console(node: items.first { $0.name == "node" }?.value) }
            } else if path == "/metrics" { self = .metrics }
            else if query.contains("wsdl") { self = .wsdl }
            else if query.contains("view") { self = .view }
            else if query.contains("fragment") { self = .fragment }
            else { self = .state }
        case .POST:
            self = items.contains { $0.name == "form" } ? .form : .envelope
        default:
            self = .notAllowed
        }
    }
}
