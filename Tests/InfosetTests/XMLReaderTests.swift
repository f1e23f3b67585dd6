import Infoset
import Testing
import TestKit

@Suite(.bounded) struct XMLReaderTests {
    func parse(_ s: String, _ limits: XMLLimits = .default) throws -> Element { try XMLReader.parse(s, limits: limits) }

    func error(_ s: String, _ limits: XMLLimits = .default) -> XMLError? {
        do { _ = try XMLReader.parse(s, limits: limits); return nil } catch { return error }
    }

    @Test func namespacesResolveToExpandedNames() throws {
        let e = try parse(#"<a:root xmlns:a="urn:a" xmlns="urn:d"><child a:attr="1" plain="2"/><x:y xmlns:x="urn:x"/></a:root>"#)
        #expect(e.name == QName("urn:a", "root"))
        let child = try #require(e.elements.first)
        #expect(child.name == QName("urn:d", "child"))
        #expect(child.attribute(QName("urn:a", "attr")) == "1")
        #expect(child.attribute("plain") == "2")
        #expect(e.elements[1].name == QName("urn:x", "y"))
    }

    @Test func defaultNamespaceCanBeUndeclared() throws {
        let e = try parse(#"<r xmlns="urn:d"><c xmlns=""/></r>"#)
        #expect(e.elements[0].name == QName("", "c"))
    }

    @Test func predefinedEntitiesAndCharacterReferences() throws {
        let e = try parse("<t a=\"&quot;&#x41;\">&lt;&gt;&amp;&apos;&#65;&#x1F600;</t>")
        #expect(e.text == "<>&'A😀")
        #expect(e.attribute("a") == "\"A")
    }

    @Test func cdataAndCommentsAndDeclaration() throws {
        let e = try parse("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c --><t><![CDATA[<raw> & ]]><!-- in --></t>")
        #expect(e.text == "<raw> & ")
    }

    @Test func everyCharacterIsKeptWhitespaceOnlyTextToo() throws {
        // A key-value entry whose value is spaces is three spaces, not "".
        let v = try parse("<Value>   </Value>")
        #expect(v.text == "   ")
        let e = try parse("<a>\n  <b> x </b>\n</a>")
        #expect(e.children.count == 3)
        #expect(e.elements.count == 1)
        #expect(e.elements[0].text == " x ")
        // Formats where whitespace between elements means nothing drop it there, and only there.
        #expect(e.withoutWhitespaceBetweenElements().children.count == 1)
        #expect(v.withoutWhitespaceBetweenElements().text == "   ")
    }

    @Test func doctypeIsRefused() {
        let e = error(#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>"#)
        #expect(e?.kind == .forbidden)
        #expect(e?.message.contains("DOCTYPE") == true)
    }

    @Test func billionLaughsIsRefusedBeforeAnyExpansion() {
        let doc = """
        <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
        <lolz>&lol2;</lolz>
        """
        #expect(error(doc)?.kind == .forbidden)
    }

    @Test func externalEntityAndUndefinedReferencesAreRefused() {
        #expect(error(#"<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>"#)?.kind == .forbidden)
        let e = error("<r>&xxe;</r>")
        #expect(e?.kind == .forbidden)
        #expect(e?.message.contains("xxe") == true)
    }

    @Test func processingInstructionsAreRefused() {
        #expect(error("<?php echo 1 ?><r/>")?.kind == .forbidden)
        #expect(error("<r><?pi x?></r>")?.kind == .forbidden)
    }

    @Test func nonUTF8EncodingIsRefused() {
        #expect(error(#"<?xml version="1.0" encoding="ISO-8859-1"?><r/>"#)?.message.contains("UTF-8") == true)
    }

    @Test func errorsCarryLineAndColumn() {
        let e = error("<a>\n  <b>\n  </c>\n</a>")
        #expect(e?.line == 3)
        #expect(e?.column == 3)
        #expect(e?.message.contains("does not match") == true)
    }

    @Test(arguments: [
        ("<a>", "unexpected end"),
        ("<a></b>", "does not match"),
        ("<a x='1' x='2'/>", "duplicate attribute"),
        ("<p:a/>", "not declared"),
        ("<a>&amp</a>", "reference"),
        ("<a/><b/>", "after the root"),
        ("text<a/>", "before the root"),
        ("<a b=1/>", "quoted"),
        ("<a>]]></a>", "]]>"),
        ("<a>\u{1}</a>", "control character"),
        ("<a>&#0;</a>", "not an XML character"),
        ("", "no root"),
        ("<a><!-- x -- y --></a>", "--"),
    ])
    func malformedDocumentsAreRejected(doc: String, expected: String) {
        let e = error(doc)
        #expect(e?.kind == .malformed, "\(doc)")
        #expect(e?.message.contains(expected) == true, "\(doc): \(String(describing: e))")
    }

    @Test func invalidUTF8IsRejectedWithPosition() throws {
        var bytes = Array("<a>\n x".utf8)
        bytes.append(0xFF)
        bytes += Array("</a>".utf8)
        do {
            _ = try XMLReader.parse(bytes)
            Issue.record("accepted invalid UTF-8")
        } catch {
            #expect(error.line == 2)
            #expect(error.message.contains("UTF-8"))
        }
    }

    @Test func limitsAreEnforced() {
        let deep = String(repeating: "<a>", count: 20) + String(repeating: "</a>", count: 20)
        #expect(error(deep, XMLLimits(maxDepth: 10))?.kind == .limit)
        #expect(error(deep, XMLLimits(maxDepth: 20)) == nil)
        let attrs = "<a " + (0..<5).map { "x\($0)='1'" }.joined(separator: " ") + "/>"
        #expect(error(attrs, XMLLimits(maxAttributes: 4))?.kind == .limit)
        #expect(error("<" + String(repeating: "n", count: 40) + "/>", XMLLimits(maxNameLength: 32))?.kind == .limit)
        let big = error("<a>" + String(repeating: "x", count: 2000) + "</a>", XMLLimits(maxDocumentSize: 1000))
        #expect(big?.kind == .limit)
        #expect(big?.message.contains("1000") == true)
    }

    @Test func sourceOffsetsGiveLineAndColumn() throws {
        let text = "<r>\n  <s/>\n</r>"
        let e = try parse(text)
        let (line, column) = XMLReader.lineColumn(of: e.elements[0].sourceOffset, in: Array(text.utf8))
        #expect(line == 2 && column == 3)
    }
}
