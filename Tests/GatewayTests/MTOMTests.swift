@testable import Gateway
import Infoset
import ServiceKernel
import Testing
import TestKit

/// Buffers through the gateway as MTOM parts, in and out, and every way a request can get them
/// wrong (the same with clients nobody here wrote: SystemTests/MTOMProcessTests).
@Suite(.bounded) struct MTOMTests {
    func served() async throws -> Served {
        try await Served(#"<Service contract="urn:decos:examples:echo" name="/echo"/>"#, gateway: #"maxBufferBytes="100000""#)
    }

    func envelope(_ header: String = "", body: String = "<Note>n</Note>") -> [UInt8] {
        Array(("<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://www.w3.org/2005/08/addressing\" "
            + "xmlns:d=\"urn:decos:soap\" xmlns:xop=\"http://www.w3.org/2004/08/xop/include\"><e:Header><a:Action>urn:decos:verb:Submit</a:Action>"
            + header + "</e:Header><e:Body>" + body + "</e:Body></e:Envelope>").utf8)
    }

    func multipart(_ root: [UInt8], _ parts: [(id: String, bytes: [UInt8])]) -> (String, [UInt8]) {
        var body = Array("--xyz\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\n\r\n".utf8) + root
        for p in parts { body += Array("\r\n--xyz\r\nContent-ID: <\(p.id)>\r\n\r\n".utf8) + p.bytes }
        return ("multipart/related; type=\"application/xop+xml\"; boundary=xyz", body + Array("\r\n--xyz--\r\n".utf8))
    }

    @Test func aBufferSentAsAPartComesBackAsAPart() async throws {
        let s = try await served()
        defer { s.stop() }
        let bytes = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let request = Message(.submit, to: "/echo", body: Element("Note", text: "hi"), buffers: [BufferRef(id: "blob", buffer: DataBuffer(bytes))])
        let (type, body) = MTOM.encode(request)
        let r = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", type)], body: body)
        #expect(r.status == 200)
        let replyType = try #require(r.header("content-type"))
        #expect(replyType.hasPrefix("multipart/related"))
        let reply = try MTOM.decode(contentType: replyType, body: r.body, pool: s.node.kernel.pool)
        #expect(reply.body?.text == "hi")
        #expect(reply.buffers.map(\.id) == ["blob"] && reply.buffers.first?.buffer.bytes == bytes)
    }

    @Test func anIncludeInTheBodyNamesItsPartAndAPlainClientGetsBuffersInline() async throws {
        let s = try await served()
        defer { s.stop() }
        let (type, body) = multipart(envelope(body: #"<Photo><xop:Include href="cid:p%401"/></Photo>"#), [("p@1", [1, 2, 3])])
        // A client that does not say it takes MTOM gets the buffer in the envelope, in Base64.
        let r = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", type)], body: body)
        #expect(r.status == 200)
        let reply = try MTOM.decode(contentType: try #require(r.header("content-type")), body: r.body, pool: s.node.kernel.pool)
        #expect(reply.buffers.map(\.id) == ["p@1"] && reply.buffers.first?.buffer.bytes == [1, 2, 3])
        let inline = Message(.submit, to: "", buffers: [BufferRef(id: "x", buffer: DataBuffer([9, 8]))])
        let plain = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", SOAP.contentType)], body: SOAP.encode(inline))
        #expect(plain.header("content-type") == SOAP.contentType)
        #expect(try SOAP.decode(plain.body).buffers.first?.buffer.bytes == [9, 8])
    }

    @Test func partsThatAreNotIncludedOrIncludesOfNoPartAreFaults() async throws {
        let s = try await served()
        defer { s.stop() }
        let include = #"<d:Buffer id="a"><xop:Include href="cid:there"/></d:Buffer>"#
        for (root, parts, says) in [(envelope(include), [("elsewhere", [UInt8]([1]))], "names no part"),
                                    (envelope(), [("stray", [1])], "included nowhere"),
                                    (envelope(include + include), [("there", [1])], "included twice")] {
            let (type, body) = multipart(root, parts)
            let r = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", type)], body: body)
            #expect(r.status == 400)
            #expect(try SOAP.decode(r.body).fault?.reason.contains(says) == true, "\(says)")
        }
    }

    @Test func aPartOverTheLimitIsRefusedAndTheNodeGoesOn() async throws {
        let s = try await served()
        defer { s.stop() }
        let (type, body) = multipart(envelope(#"<d:Buffer id="a"><xop:Include href="cid:big"/></d:Buffer>"#), [("big", [UInt8](repeating: 1, count: 150_000))])
        let r = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", type)], body: body)
        #expect(r.status == 413)
        #expect(try SOAP.decode(r.body).fault?.reason.contains("100000") == true)
        let noBoundary = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", "multipart/related")], body: body)
        #expect(noBoundary.status == 400)
        // Nothing of it stays in the pool (given back before the 413 was written), and the next
        // request is served.
        #expect(s.node.kernel.pool.usage.inUse == 0)
        #expect(try await HTTPClient.send(.GET, s.url("/counter")).status == 200)
    }

    @Test func partsCountWhatTheyDeclareSoEmptyOnesCannotReserveThePool() async throws {
        let s = try await served()
        defer { s.stop() }
        let before = s.node.kernel.pool.usage.mapped
        // Eight parts, each declaring 60,000 bytes: 480,000 declared against a limit of 100,000 —
        // empty (as the attack sent them: a lie, refused as one) or holding what they declare.
        for (bytes, status) in [(0, 400), (60_000, 413)] {
            var body = Array("--xyz\r\nContent-Type: application/xop+xml\r\n\r\n".utf8) + envelope()
            for i in 0..<8 { body += Array("\r\n--xyz\r\nContent-ID: <p\(i)>\r\nContent-Length: 60000\r\n\r\n".utf8) + [UInt8](repeating: 1, count: bytes) }
            body += Array("\r\n--xyz--\r\n".utf8)
            let r = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", "multipart/related; boundary=xyz")], body: body)
            #expect(r.status == status, "\((try? SOAP.decode(r.body))?.fault?.reason ?? "")")
            // At most the one part that fit was ever given memory, never the eight.
            #expect(s.node.kernel.pool.usage.mapped - before <= 100_000)
            #expect(s.node.kernel.pool.usage.inUse == 0)
        }
    }

    @Test func anEnvelopeTheClientMayNotSendIsRefusedBeforeItsBuffersTakeMemory() async throws {
        let s = try await served()
        defer { s.stop() }
        let before = s.node.kernel.pool.usage.mapped
        // Power off, with a buffer, from a client without the operator token.
        let (type, body) = multipart(envelope(#"<d:Buffer id="a"><xop:Include href="cid:big"/></d:Buffer>"#, body: "<Poweroff/>"),
                                     [("big", [UInt8](repeating: 1, count: 90_000))])
        let r = try await HTTPClient.send(.POST, s.url("/os/node"), headers: [("Content-Type", type)], body: body)
        #expect(r.status == 403)
        #expect(try SOAP.decode(r.body).fault?.subcode?.local == "Denied")
        #expect(s.node.kernel.pool.usage.mapped == before)
        // An unknown token is refused on the request's head, before its body.
        let guess = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", type), ("Authorization", "Bearer guess-guess-guess-guess")], body: body)
        #expect(guess.status == 401)
        #expect(s.node.kernel.pool.usage.mapped == before)
        // And a root that does not come first cannot make room for the parts ahead of it.
        var late = Array("--xyz\r\nContent-ID: <big>\r\n\r\n".utf8) + [UInt8](repeating: 1, count: 90_000)
        late += Array("\r\n--xyz\r\nContent-ID: <root>\r\nContent-Type: application/xop+xml\r\n\r\n".utf8) + envelope() + Array("\r\n--xyz--\r\n".utf8)
        let reordered = try await HTTPClient.send(.POST, s.url("/echo"), headers: [("Content-Type", "multipart/related; start=\"<root>\"; boundary=xyz")], body: late)
        #expect(reordered.status == 400)
        #expect(s.node.kernel.pool.usage.mapped == before)
    }
}
