@testable import Gateway
import NIOHTTP1
import Testing
import TestKit

/// Which handler a request goes to, from its method, path and query alone.
@Suite(.bounded) struct RouteTests {
    func route(_ method: HTTPMethod, _ uri: String) -> Route {
        Route(method, path: Gateway.destination(String(uri.prefix { $0 != "?" && $0 != "#" })), query: Gateway.queryItems(uri))
    }

    @Test func eachRequestFindsItsHandler() {
        #expect(route(.GET, "/?events&node=a") == .events)
        #expect(route(.GET, "/?nodes&pages") == .nodesTable(pages: true))
        #expect(route(.GET, "/?nodes") == .nodesTable(pages: false))
        #expect(route(.GET, "/?node=b") == .console(node: "b"))
        #expect(route(.HEAD, "/") == .console(node: nil))
        #expect(route(.GET, "/metrics") == .metrics)
        #expect(route(.GET, "/counter?wsdl") == .wsdl)
        #expect(route(.GET, "/counter?WSDL") == .wsdl)
        #expect(route(.GET, "/counter?view") == .view)
        #expect(route(.GET, "/@b/counter?fragment") == .fragment)
        #expect(route(.GET, "/counter") == .state)
        #expect(route(.POST, "/counter?form") == .form)
        #expect(route(.POST, "/counter") == .envelope)
        #expect(route(.DELETE, "/counter") == .notAllowed)
        #expect(route(.PUT, "/") == .notAllowed)
    }
}
