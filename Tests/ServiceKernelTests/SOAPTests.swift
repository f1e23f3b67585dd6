import Infoset
import ServiceKernel
import Testing
import TestKit

@Suite(.bounded) struct SOAPTests {
    @Test func requestRoundTripsWithEveryHeader() throws {
        var m = Message(.update, to: "decos://n/counter", body: Element("Increment", children: [.element(Element("By", text: "2"))]),
                        buffers: [BufferRef(id: "b1", buffer: DataBuffer([1, 2, 3, 250]))])
        m.messageID = "urn:uuid:1"
        m.relatesTo = "urn:uuid:0"
        m.replyTo = "decos://n/me"
        m.from = "decos://n/me"
        let back = try SOAP.decode(SOAP.encode(m))
        #expect(back.kind == .request)
        #expect(back.verb == .update)
        #expect(back.to == m.to)
        #expect(back.messageID == m.messageID)
        #expect(back.relatesTo == m.relatesTo)
        #expect(back.replyTo == m.replyTo)
        #expect(back.from == m.from)
        #expect(back.body == m.body)
        #expect(back.buffers.count == 1)
        #expect(back.buffer("b1")?.bytes == [1, 2, 3, 250])
    }

    @Test func responseActionIsVerbResponse() throws {
        let reply = Message.response(to: Message(.get, to: "/x"), body: Element("S"))
        #expect(reply.action == "urn:decos:verb:GetResponse")
        let back = try SOAP.decode(SOAP.encode(reply))
        #expect(back.kind == .response && back.verb == .get)
    }

    @Test func faultsRoundTripWithCodeSubcodeAndReason() throws {
        let fault = Fault(.sender, "UnknownService", "no service at /x", detail: Element("Hint", text: "try /directory"))
        let m = Message.faulted(fault, replyingTo: Message(.get, to: "/x"))
        let text = String(decoding: SOAP.encode(m), as: UTF8.self)
        #expect(text.contains("<env:Value>env:Sender</env:Value>"))
        let back = try SOAP.decode(Array(text.utf8))
        #expect(back.kind == .fault)
        #expect(back.fault == fault)
    }

    func fault(_ xml: String) -> Fault? {
        do { _ = try SOAP.decode(Array(xml.utf8)); return nil } catch { return error }
    }

    let env = #"xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing""#

    @Test func badEnvelopesBecomeSenderFaults() {
        #expect(fault("<x/>")?.subcode?.local == "NotSOAP")
        #expect(fault(#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>"#)?.code == .versionMismatch)
        #expect(fault("<env:Envelope \(env)><env:Body/></env:Envelope>")?.subcode?.local == "MessageAddressingHeaderRequired")
        #expect(fault("<env:Envelope \(env)><env:Header><wsa:Action>urn:decos:verb:Fly</wsa:Action></env:Header><env:Body/></env:Envelope>")?.subcode?.local == "ActionNotSupported")
        #expect(fault("<env:Envelope \(env)><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header></env:Envelope>")?.reason.contains("no Body") == true)
        #expect(fault("<env:Envelope \(env)><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action></env:Header><env:Body><a/><b/></env:Body></env:Envelope>")?.reason.contains("2 elements") == true)
        #expect(fault("<env:Envelope \(env)><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action><x:Sec xmlns:x=\"urn:x\" env:mustUnderstand=\"true\"/></env:Header><env:Body/></env:Envelope>")?.code == .mustUnderstand)
        #expect(fault("<env:Envelope \(env)><env:Body><a></env:Body></env:Envelope>")?.subcode?.local == "Malformed")
    }

    @Test func unknownOptionalHeadersAreIgnored() throws {
        let m = try SOAP.decode(Array("<env:Envelope \(env)><env:Header><wsa:Action>urn:decos:verb:Get</wsa:Action><x:Trace xmlns:x=\"urn:x\"/></env:Header><env:Body/></env:Envelope>".utf8))
        #expect(m.verb == .get && m.body == nil)
    }

    @Test func verbsParseFromNamesAndActions() {
        #expect(Verb(name: "upsert") == .upsert)
        #expect(Verb(name: "urn:decos:verb:Query") == .query)
        #expect(Verb(action: "urn:decos:verb:get") == nil)
        #expect(Verb.allCases.count == 12)
    }
}
