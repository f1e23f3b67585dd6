@testable import Gateway
import Infoset
import ServiceKernel
import Testing
import TestKit

/// What a web page in the user's browser can make the browser send to a node on loopback, and
/// that none of it acts on the node (docs/security.md, "A web page in your browser").
@Suite(.bounded) struct RequestGuardTests {
    let form = ("Content-Type", "application/x-www-form-urlencoded")
    let increment = Array(("verb=Update&body=" + "<Increment><By>1</By></Increment>".formEncoded).utf8)

    func counter(_ s: Served) async throws -> String? {
        try XMLReader.parse(try await HTTPClient.send(.GET, s.url("/counter")).body).child("Value")?.text
    }

    @Test func aDNSRebindingPageIsRefusedByItsHostName() async throws {
        let s = try await Served(gateway: #"hosts="decos-a.lan""#)
        defer { s.stop() }
        // What a page at http://evil.example:PORT sends once its name resolves to 127.0.0.1: the
        // browser calls that same-origin, so Origin and Host agree — on a name the node is not.
        let port = s.url("/").port
        let rebound = [form, ("Host", "evil.example:\(port)"), ("Origin", "http://evil.example:\(port)")]
        let r = try await HTTPClient.send(.POST, s.url("/counter?form"), headers: rebound, body: increment)
        #expect(r.status == 421)
        let soap = try await HTTPClient.send(.POST, s.url("/counter"), headers: [("Content-Type", SOAP.contentType), ("Host", "evil.example")],
                                             body: SOAP.encode(Message(.update, to: "", body: try XMLReader.parse("<Increment><By>1</By></Increment>"))))
        #expect(soap.status == 421)
        #expect(try await HTTPClient.send(.GET, s.url("/counter"), headers: [("Host", "evil.example")]).status == 421)
        #expect(try await counter(s) == "0")
        // The names it does answer to: IP literals, localhost, and those in hosts=.
        for host in ["127.0.0.1:\(port)", "localhost:\(port)", "[::1]:\(port)", "decos-a.lan:\(port)", "DECOS-A.LAN.", "10.1.2.3"] {
            #expect(try await HTTPClient.send(.GET, s.url("/counter"), headers: [("Host", host)]).status == 200, "\(host)")
        }
    }

    @Test func aFormNeedsProofItCameFromTheNodesOwnPage() async throws {
        let s = try await Served()
        defer { s.stop() }
        // Another site's page: by its Origin, or with none but the browser's Sec-Fetch-Site.
        for headers in [[form, ("Origin", "http://evil.example")], [form, ("Sec-Fetch-Site", "cross-site")], [form, ("Sec-Fetch-Site", "same-site")],
                        [form, ("Origin", "null")], [form]] {
            let r = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: headers, body: increment)
            #expect(r.status == 403, "\(headers)")
        }
        #expect(try await counter(s) == "0")
        // The page's own: its Origin, or Sec-Fetch-Site: same-origin.
        for headers in [[form, ("Origin", s.base)], [form, ("Sec-Fetch-Site", "same-origin")]] {
            #expect(try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: headers, body: increment).status == 200)
        }
        #expect(try await counter(s) == "2")
    }

    @Test func aPageCannotSendSOAPWithoutAPreflightTheGatewayNeverAnswers() async throws {
        let s = try await Served()
        defer { s.stop() }
        let envelope = SOAP.encode(Message(.update, to: "", body: try XMLReader.parse("<Increment><By>1</By></Increment>")))
        // What a page may send without a preflight: a "simple" content type. Refused.
        for type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            #expect(try await HTTPClient.send(.POST, s.url("/counter"), headers: [("Content-Type", type)], body: envelope).status == 415, "\(type)")
        }
        // The preflight itself gets no CORS headers, so the browser sends nothing after it.
        let preflight = try await HTTPClient.send(.OPTIONS, s.url("/counter"), headers: [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")])
        #expect([403, 405].contains(preflight.status))
        #expect(!preflight.headers.contains { $0.0.lowercased().hasPrefix("access-control-") })
        // And were one sent anyway, another origin's SOAP POST is refused too.
        let foreign = try await HTTPClient.send(.POST, s.url("/counter"), headers: [("Content-Type", SOAP.contentType), ("Origin", "http://evil.example")], body: envelope)
        #expect(foreign.status == 403)
        #expect(try await counter(s) == "0")
    }

    @Test func whatChangesTheNodeItselfNeedsTheOperatorTokenEvenOnLoopback() async throws {
        let secret = "operator-secret-for-this-test-0123"
        let s = try await Served(operatorSecret: secret)
        defer { s.stop() }
        let node = [("Content-Type", SOAP.contentType)]
        let asOperator = node + [("Authorization", "Bearer \(secret)")]
        let stop = Message(.submit, to: "", body: try XMLReader.parse("<Stop><Name>none</Name></Stop>"))
        let load = Message(.submit, to: "", body: try XMLReader.parse(#"<Manifest xmlns="urn:decos:manifest"><Service contract="urn:decos:examples:echo" name="/e"/></Manifest>"#))
        let cases: [(String, Message)] = [("/os/node", Message(.submit, to: "", body: Element("Poweroff"))), ("/os/processes", stop),
                                          ("/manifestloader", load), ("/os/memory", Message(.drop, to: "")), ("/@gw/os/node", Message(.submit, to: "", body: Element("Reboot")))]
        for (path, m) in cases {
            let (status, reply) = try await s.post(path, m, headers: node)
            #expect(status == 400 && reply.fault?.subcode?.local == "Denied" && reply.fault!.reason.contains("operator token"), "\(path): \(reply.fault?.reason ?? "")")
        }
        // A form without the token is refused; with it in the token field, it is the operator's.
        let stopForm = "verb=Submit&body=\("<Stop><Name>none</Name></Stop>".formEncoded)"
        let viaForm = try await HTTPClient.send(.POST, s.url("/os/processes?form&fragment"), headers: [form, ("Origin", s.base)], body: Array(stopForm.utf8))
        #expect(viaForm.status == 400 && String(decoding: viaForm.body, as: UTF8.self).contains("operator token"))
        let withToken = try await HTTPClient.send(.POST, s.url("/os/processes?form&fragment"), headers: [form, ("Origin", s.base)],
                                                  body: Array((stopForm + "&token=" + secret.formEncoded).utf8))
        #expect(!String(decoding: withToken.body, as: UTF8.self).contains("Denied"))
        // The operator is obeyed (here: no process of that name, no power handler — but not Denied).
        let (_, stopped) = try await s.post("/os/processes", stop, headers: asOperator)
        #expect(stopped.fault?.subcode?.local != "Denied")
        let (loaded, created) = try await s.post("/manifestloader", load, headers: asOperator)
        #expect(loaded == 200 && created.fault == nil)
        // Reading and following the node stays open.
        #expect(try await HTTPClient.send(.GET, s.url("/os/node")).status == 200)
    }
}
