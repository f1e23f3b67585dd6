import Infoset
import Testing
import TestKit

/// The shapes `InfosetSchema` finds must be the ones `InfosetEncoder` writes and `InfosetDecoder`
/// reads: a WSDL built from them tells generated clients what to send.
@Suite(.bounded) struct InfosetSchemaTests {
    struct Increment: Codable { var by: Int }
    struct Entry: Codable { var key: String; var value: String? }
    struct Book: Codable { var entry: [Entry]; var title: String; var pages: UInt16; var price: Double; var signed: Bool }
    struct Wrapper: Codable { var inner: Increment; var payload: Element? }
    struct Tags: Codable { var tag: [String: String] }
    enum Colour: String, Codable { case red, green }
    struct Painted: Codable { var colour: Colour }
    enum Size: String, Codable, CaseIterable { case small, large = "LARGE" }
    struct Shirt: Codable { var size: Size; var spare: Size? }
    final class Tree: Codable { var child: [Tree] = [] }
    final class Chain: Codable { var next: Chain? }

    func field(_ name: String, _ s: InfosetSchema, optional: Bool = false, repeated: Bool = false) -> InfosetSchema.Field {
        InfosetSchema.Field(name: name, schema: s, optional: optional, repeated: repeated)
    }

    @Test func scalarsOptionalsAndListsAreNamedAsTheEncoderWritesThem() throws {
        let book = try #require(InfosetSchema.element(of: Book.self))
        #expect(book.name == "Book")
        #expect(book.schema == .sequence([
            field("Entry", .sequence([field("Key", .scalar("string")), field("Value", .scalar("string"), optional: true)]), optional: true, repeated: true),
            field("Title", .scalar("string")), field("Pages", .scalar("unsignedShort")), field("Price", .scalar("double")),
            field("Signed", .scalar("boolean")),
        ]))
        #expect(InfosetSchema.element(of: Increment.self)?.schema == .sequence([field("By", .scalar("long"))]))
    }

    @Test func nestedTypesNestAndElementsOrDictionariesAreAny() throws {
        let w = try #require(InfosetSchema.element(of: Wrapper.self))
        #expect(w.schema == .sequence([field("Inner", .sequence([field("By", .scalar("long"))])), field("Payload", .any, optional: true)]))
        #expect(InfosetSchema.element(of: Tags.self)?.schema == .sequence([field("Tag", .any)]))
    }

    @Test func caseIterableEnumsAreEnumerations() {
        #expect(InfosetSchema.element(of: Shirt.self)?.schema == .sequence([
            field("Size", .enumeration(["small", "LARGE"])), field("Spare", .enumeration(["small", "LARGE"]), optional: true),
        ]))
    }

    @Test func typesTheProbeCannotWalkHaveNoSchema() {
        // An enum from a string "" is not, and types that contain themselves.
        #expect(InfosetSchema.element(of: Painted.self) == nil)
        #expect(InfosetSchema.element(of: Chain.self) == nil)
        #expect(InfosetSchema.element(of: Tree.self) == nil)
    }

    @Test func whatTheSchemaSaysDecodes() throws {
        // A body written to the schema's names decodes; the optional one may be left out.
        let body = try XMLReader.parse("<Entry><Key>k</Key></Entry>")
        #expect(try InfosetDecoder().decode(Entry.self, from: body).key == "k")
        #expect(InfosetSchema.element(of: Entry.self)?.name == body.name.local)
    }
}
