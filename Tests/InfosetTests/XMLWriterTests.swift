import Infoset
import Testing
import TestKit

@Suite(.bounded) struct XMLWriterTests {
    @Test func roundTripsNamespacesAttributesAndEscapes() throws {
        var root = Element(QName("urn:a", "root"), attributes: [Attribute(QName("k"), "a\"<&>\n\tb")])
        var child = Element(QName("urn:b", "child"), attributes: [Attribute(QName("urn:c", "q"), "v")])
        child.append(text: "x < y & z > w\r\nnext")
        root.append(child)
        root.append(Element(QName("", "plain"), text: "p"))
        root.append(Element(QName("urn:a", "same"), text: "s"))
        let text = XMLWriter.string(root, declaration: true)
        let back = try XMLReader.parse(text)
        #expect(back == root, "\(text)")
    }

    @Test func soapNamespacesKeepCustomaryPrefixes() {
        let e = Element(QName("http://www.w3.org/2003/05/soap-envelope", "Envelope"))
        #expect(XMLWriter.string(e) == #"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"/>"#)
    }

    @Test func prettyOutputReadsBackTheSame() throws {
        var e = Element("a")
        var b = Element("b")
        b.append(Element("c", text: "1"))
        e.append(b)
        e.append(Element("d", text: " spaced "))
        let pretty = XMLWriter.pretty(e)
        #expect(pretty.contains("\n  <b>\n    <c>1</c>"))
        // Indentation is whitespace between elements: the same once that is set aside.
        #expect(try XMLReader.parse(pretty).withoutWhitespaceBetweenElements() == e)
    }

    @Test func base64RoundTrips() {
        for n in 0..<10 {
            let bytes = (0..<n).map { UInt8($0 * 37 & 0xFF) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("hello".utf8)) == "aGVsbG8=")
        #expect(Base64.decode("a$b=") == nil)
    }
}
