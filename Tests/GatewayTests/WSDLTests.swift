import Foundation
import Gateway
import Infoset
import ServiceKernel
import Testing
import TestKit

/// A service with a contract of its own, described by the Codable types it takes and gives.
actor OrderDesk: Service {
    static let contract = "urn:test:orders"
    struct Line: Codable, Sendable { var item: String; var quantity: Int32 }
    struct Order: Codable, Sendable { var customer: String; var line: [Line]; var rush: Bool?; var note: String? }
    struct Receipt: Codable, Sendable { var number: Int; var items: Int; var rush: Bool }
    struct OrderBook: Codable, Sendable { var receipt: [Receipt] }
    static let operations = [
        ServiceOperation(.get, returns: OrderBook.self),
        ServiceOperation(.submit, takes: Order.self, returns: Receipt.self),
    ]

    var book = OrderBook(receipt: [])
    init(config: ServiceConfig) {}

    func handle(_ request: Request) throws -> Element? {
        switch request.verb {
        case .get: return try infoset(book)
        case .submit:
            let order = try request.decode(Order.self)
            let receipt = Receipt(number: book.receipt.count + 1, items: order.line.reduce(0) { $0 + Int($1.quantity) }, rush: order.rush ?? false)
            book.receipt.append(receipt)
            return try infoset(receipt)
        default: throw Fault.actionNotSupported(request.verb, "/orders")
        }
    }
}

/// `GET /path?wsdl`, checked by a generated client nobody here wrote: zeep (Debian's python3-zeep,
/// installed by `make deps`) loads the WSDL of three services and calls them through it.
@Suite(.bounded, .ownThreads) struct WSDLTests {
    @Test func zeepLoadsTheWSDLOfEachServiceAndCallsItsVerbs() async throws {
        let s = try await Served(#"""
            <Service contract="urn:decos:examples:kv" name="/kv"><State><KVState><Entry><Key>greeting</Key><Value>hello</Value></Entry></KVState></State></Service>
            <Service contract="urn:test:orders" name="/orders"/>
            """#)
        defer { s.stop() }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/zeep_client.py").path
        // Bounded: a client that hung would fail the test, not CI.
        let (status, out, err) = try runProgram("/usr/bin/timeout", ["120", "/usr/bin/python3", script, s.base])
        #expect(status == 0, "zeep failed: \(err)")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines == [
            "counter.Get 0",
            "counter.Update 5",
            "kv.Upsert colour blue",
            "kv.Get colour=blue,greeting=hello",
            "kv.Update fault key \"missing\" does not exist; use Insert or Upsert",
            "orders.Submit 1 7 True",
            "orders.Get 1",
            "remote.Get 5",
        ], "\(out)\(err)")
        // The calls changed the services' state, as the node itself sees it.
        let counter = await s.node.kernel.send(Message(.get, to: "/counter"), as: .system)
        #expect(counter.body?.child("Value")?.text == "5")
    }

    @Test func theWSDLDescribesEachVerbWithTheBodiesOfItsTypes() async throws {
        let s = try await Served(#"<Service contract="urn:test:orders" name="/orders"/>"#)
        defer { s.stop() }
        let r = try await HTTPClient.send(.GET, s.url("/orders?wsdl"))
        #expect(r.status == 200)
        let wsdl = try XMLReader.parse(r.body)
        let xsd = "http://www.w3.org/2001/XMLSchema", w = "http://schemas.xmlsoap.org/wsdl/"
        #expect(wsdl.name == QName(w, "definitions") && wsdl.attribute("targetNamespace") == "urn:test:orders")
        let operations = wsdl.child(QName(w, "portType"))?.elements.compactMap { $0.attribute("name") }
        #expect(operations == ["Get", "Submit"])
        let schema = try #require(wsdl.child(QName(w, "types"))?.child(QName(xsd, "schema")))
        let order = try #require(schema.elements.first { $0.attribute("name") == "Order" })
        let fields = order.child(QName(xsd, "complexType"))?.child(QName(xsd, "sequence"))?.elements ?? []
        #expect(fields.map { [$0.attribute("name") ?? "", $0.attribute("type") ?? "-", $0.attribute("minOccurs") ?? "1", $0.attribute("maxOccurs") ?? "1"] } == [
            ["Customer", "xsd:string", "1", "1"],
            ["Line", "-", "0", "unbounded"],
            ["Rush", "xsd:boolean", "0", "1"],
            ["Note", "xsd:string", "0", "1"],
        ])
        let address = wsdl.child(QName(w, "service"))?.elements.first?.elements.first?.attribute("location")
        #expect(address == s.base + "/orders")
    }

    @Test func aWSDLOfNoServiceIsNotFoundAndAnUndeclaredServiceListsEveryVerb() async throws {
        let s = try await Served(#"<Service contract="urn:test:sleeper" name="/sleeper"/>"#)
        defer { s.stop() }
        let missing = try await HTTPClient.send(.GET, s.url("/nothing?wsdl"))
        #expect(missing.status == 404)
        let r = try await HTTPClient.send(.GET, s.url("/sleeper?wsdl"))
        let wsdl = try XMLReader.parse(r.body)
        let operations = wsdl.child(QName("http://schemas.xmlsoap.org/wsdl/", "portType"))?.elements.compactMap { $0.attribute("name") }
        #expect(operations == Verb.allCases.filter { $0 != .subscribe }.map(\.rawValue))
    }

    @Test func anEnvelopeWithoutWSAActionTakesTheContentTypesAction() async throws {
        let s = try await Served()
        defer { s.stop() }
        let envelope = #"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><Increment><By>2</By></Increment></e:Body></e:Envelope>"#
        let r = try await HTTPClient.send(.POST, s.url("/counter"), headers: [("Content-Type", #"application/soap+xml; charset=utf-8; action="urn:decos:verb:Update""#)],
                                          body: Array(envelope.utf8))
        #expect(r.status == 200)
        #expect(try SOAP.decode(r.body).body?.child("Value")?.text == "2")
        let none = try await HTTPClient.send(.POST, s.url("/counter"), headers: [("Content-Type", SOAP.contentType)], body: Array(envelope.utf8))
        #expect(none.status == 400)
    }
}
