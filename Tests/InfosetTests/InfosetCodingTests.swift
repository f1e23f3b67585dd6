import Infoset
import Testing
import TestKit

struct Order: Codable, Equatable {
    struct Line: Codable, Equatable {
        var sku: String
        var quantity: Int
    }
    var id: Int
    var customer: String
    var note: String?
    var express: Bool
    var weight: Double
    var line: [Line]
    var tag: [String]
}

enum Color: String, Codable { case red, green }
struct Painted: Codable, Equatable { var color: Color; var free: Element? }

@Suite(.bounded) struct InfosetCodingTests {
    let order = Order(id: 7, customer: "ACME & Co", note: nil, express: true, weight: 1.5,
                      line: [.init(sku: "a", quantity: 1), .init(sku: "b", quantity: 2)], tag: ["x", "y"])

    @Test func structsBecomeElementsNamedByTypeAndKeys() throws {
        let e = try InfosetEncoder().encode(order)
        #expect(XMLWriter.string(e) == "<Order><Id>7</Id><Customer>ACME &amp; Co</Customer><Express>true</Express><Weight>1.5</Weight><Line><Sku>a</Sku><Quantity>1</Quantity></Line><Line><Sku>b</Sku><Quantity>2</Quantity></Line><Tag>x</Tag><Tag>y</Tag></Order>")
    }

    @Test func roundTrip() throws {
        let e = try InfosetEncoder().encode(order)
        #expect(try InfosetDecoder().decode(Order.self, from: e) == order)
        let text = XMLWriter.string(e)
        #expect(try InfosetDecoder().decode(Order.self, from: XMLReader.parse(text)) == order)
    }

    @Test func emptyListsAndEnumsAndEmbeddedElements() throws {
        var o = order
        o.line = []
        o.tag = []
        #expect(try InfosetDecoder().decode(Order.self, from: InfosetEncoder().encode(o)) == o)
        let p = Painted(color: .green, free: Element("Any", text: "thing"))
        let e = try InfosetEncoder().encode(p)
        #expect(e.child("Free")?.child("Any")?.text == "thing")
        #expect(try InfosetDecoder().decode(Painted.self, from: e) == p)
    }

    @Test func decodingErrorsNameThePath() throws {
        let bad = try XMLReader.parse("<Order><Id>seven</Id></Order>")
        do {
            _ = try InfosetDecoder().decode(Order.self, from: bad)
            Issue.record("decoded a bad Id")
        } catch let e as InfosetDecodingError {
            #expect(e.description == #"Order/Id: "seven" is not a valid Int"#)
        }
        let missing = try XMLReader.parse("<Order><Id>1</Id></Order>")
        #expect(throws: InfosetDecodingError.self) { try InfosetDecoder().decode(Order.self, from: missing) }
    }

    @Test func namespacedBodiesDecodeByLocalName() throws {
        let e = try XMLReader.parse(#"<Line xmlns="urn:shop"><Sku> z </Sku><Quantity> 3 </Quantity></Line>"#)
        #expect(try InfosetDecoder().decode(Order.Line.self, from: e) == .init(sku: " z ", quantity: 3))
    }
}

@Suite(.bounded) struct WhitespaceCodingTests {
    struct Entry: Codable, Equatable {
        var key: String
        var value: String
        enum CodingKeys: String, CodingKey { case key = "Key", value = "Value" }
    }

    @Test func aValueOfSpacesDecodesAsSpacesAndIndentationBetweenFieldsIsIgnored() throws {
        let text = "<Entry>\n  <Key>k</Key>\n  <Value>   </Value>\n</Entry>"
        #expect(try InfosetDecoder().decode(Entry.self, from: XMLReader.parse(text)) == Entry(key: "k", value: "   "))
    }
}
