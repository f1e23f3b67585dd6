@testable import Gateway
import Infoset
import ServiceKernel
import Testing
import TestKit

/// The console's parts a browser leans on, each over real HTTP: the stream of changes, the
/// fragments, the forms and their checks, and the state rendered as HTML (the whole page in a real
/// browser is SystemTests/ConsoleTests).
@Suite(.bounded) struct ConsoleTests {
    @Test func theEventStreamNamesEachServiceThatChangesAndTheOnesItMayNotFollow() async throws {
        let s = try await Served(#"<Service contract="urn:decos:examples:kv" name="/kv"/>"#)
        defer { s.stop() }
        let events = LineCollector()
        let reader = Task {
            try await HTTPClient.send(.GET, s.url("/?events&path=%2F%40gw%2Fcounter&path=/kv&path=/nothing")) { chunk in await events.feed(chunk) }
        }
        // `ready` once every subscription is in place; the unknown service is refused first.
        try await events.wait(untilItHolds: "event: ready\ndata: 2")
        #expect(await events.text.contains("event: refused\ndata: /nothing "))
        _ = try await s.post("/counter", Message(.update, to: "", body: Element("Increment", children: [.element(Element("By", text: "2"))])))
        _ = try await s.post("/kv", Message(.upsert, to: "", body: try XMLReader.parse("<Entry><Key>k</Key><Value>v</Value></Entry>")))
        try await events.wait(untilItHolds: "event: change\ndata: /kv Upsert")
        #expect(await events.text.contains("event: change\ndata: /@gw/counter Update"))
        reader.cancel()
        let none = try await HTTPClient.send(.GET, s.url("/?events"))
        #expect(none.status == 400)
    }

    @Test func aFormSendsAVerbAndAnswersWithTheReplyAsHTML() async throws {
        let s = try await Served(maxRequestBytes: 65536)
        defer { s.stop() }
        // The console's own page sends its Origin, as every browser does with a POST.
        let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Origin", s.base)]
        let body = "verb=Update&body=" + "<Increment><By>4</By></Increment>".formEncoded + "&token="
        let r = try await HTTPClient.send(.POST, s.url("/@gw/counter?form&fragment"), headers: form, body: Array(body.utf8))
        let html = String(decoding: r.body, as: UTF8.self)
        #expect(r.status == 200 && html.contains("UpdateResponse") && html.contains("<td>4</td>"))
        #expect(try XMLReader.parse(try await HTTPClient.send(.GET, s.url("/counter")).body).child("Value")?.text == "4")
        // Without `fragment` the answer is a page of its own, for a browser without JavaScript.
        let page = try await HTTPClient.send(.POST, s.url("/@gw/counter?form"), headers: form, body: Array(body.utf8))
        #expect(String(decoding: page.body, as: UTF8.self).hasPrefix("<!DOCTYPE html>"))
        // A fault is shown as one, with the status its code maps to.
        let bad = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: form, body: Array("verb=Update&body=%3CIncrement%2F%3E".utf8))
        #expect(bad.status == 400 && String(decoding: bad.body, as: UTF8.self).contains("InvalidBody"))
        let notXML = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: form, body: Array("verb=Update&body=%3Coops".utf8))
        #expect(notXML.status == 400)
        let noVerb = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: form, body: Array("verb=Frobnicate".utf8))
        #expect(noVerb.status == 400)
        let token = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: form, body: Array("verb=Get&token=guess".utf8))
        #expect(token.status == 401)
        // Another site's page cannot post to the node's console.
        let forged = try await HTTPClient.send(.POST, s.url("/counter?form&fragment"), headers: [form[0], ("Origin", "http://evil.example")],
                                               body: Array(body.utf8))
        #expect(forged.status == 403)
        // The two forms that were sent added 4 each; the forged one nothing.
        #expect(try XMLReader.parse(try await HTTPClient.send(.GET, s.url("/counter")).body).child("Value")?.text == "8")
    }

    @Test func aServiceHasAPageAndAFragmentOfItsState() async throws {
        let s = try await Served(#"<Service contract="urn:decos:examples:kv" name="/kv"><State><KVState><Entry><Key>a&lt;b</Key><Value>x</Value></Entry></KVState></State></Service>"#)
        defer { s.stop() }
        let fragment = String(decoding: try await HTTPClient.send(.GET, s.url("/kv?fragment")).body, as: UTF8.self)
        #expect(fragment == #"<table class="list"><tr><th>Key</th><th>Value</th></tr><tr><td>a&lt;b</td><td>x</td></tr></table>"#)
        let page = String(decoding: try await HTTPClient.send(.GET, s.url("/@gw/kv?view")).body, as: UTF8.self)
        #expect(page.contains(fragment) && page.contains("urn:decos:examples:kv") && page.contains(#"<option value="Upsert""#))
        let nodes = String(decoding: try await HTTPClient.send(.GET, s.url("/?nodes")).body, as: UTF8.self)
        #expect(nodes.contains(##"<a href="#node-gw">gw</a>"##) && nodes.contains("alive"))
    }

    @Test func oneNodesServicesArePageOfTheirOwn() async throws {
        let s = try await Served()
        defer { s.stop() }
        let own = String(decoding: try await HTTPClient.send(.GET, s.url("/?node=gw")).body, as: UTF8.self)
        #expect(own.contains(#"id="node-gw""#) && own.contains(#"data-path="/@gw/counter""#) && own.contains("node gw of the cluster"))
        // Its table links to each node's page; a node that is not there has no section.
        #expect(own.contains(#"<a href="/?node=gw#node-gw">gw</a>"#))
        let none = String(decoding: try await HTTPClient.send(.GET, s.url("/?node=elsewhere")).body, as: UTF8.self)
        #expect(none.contains(#"id="nodes""#) && !none.contains(#"data-path="/@gw/counter""#))
    }

    @Test func stateIsRenderedAsTablesAndHostileTextAsText() throws {
        let e = try XMLReader.parse("<S><Name>&lt;script&gt;alert(1)&lt;/script&gt;</Name><Item><A>1</A></Item><Item><A>2</A><B>3</B></Item><Empty/></S>")
        let html = StateView.html(e)
        #expect(!html.contains("<script>"))
        #expect(html.contains("&lt;script&gt;"))
        #expect(html.contains(#"<table class="list"><tr><th>A</th><th>B</th></tr><tr><td>1</td><td></td></tr><tr><td>2</td><td>3</td></tr></table>"#))
        let many = Element("Log", children: (1...150).map { .element(Element("Line", children: [.element(Element("Text", text: "\($0)"))])) })
        let shown = StateView.html(many, maxRows: 20)
        #expect(shown.contains("the last 20 of 150 Line") && shown.contains("<td>150</td>") && !shown.contains("<td>130</td>"))
    }
}

extension String {
    /// As a browser encodes a form field.
    var formEncoded: String {
        var out = ""
        for b in utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): out.append(Character(UnicodeScalar(b)))
            case UInt8(ascii: " "): out += "+"
            default: out += "%" + String(b, radix: 16, uppercase: true).leftPadded
            }
        }
        return out
    }
    var leftPadded: String { count < 2 ? "0" + self : self }
}

extension ConsoleTests {
    /// A member's state comes from another node: an uptime no clock gives (huge, not a number,
    /// below zero) shows as "?" and the page is still made, where `Int(Double)` trapped.
    @Test func anUptimeNoClockGivesRendersAsAQuestionMark() async throws {
        for hostile in [1e300, .infinity, -.infinity, .nan, -1, Double(Int.max)] {
            #expect(Gateway.duration(hostile) == "?", "uptime \(hostile)")
        }
        #expect(Gateway.duration(59.9) == "59 s")
        #expect(Gateway.duration(90_061) == "1 d 1 h")
        let s = try await Served()
        defer { s.stop() }
        let member = try XMLReader.parse("<Member><Name>far</Name><Status>alive</Status></Member>")
        for text in ["1e300", "nan", "-5"] {
            let state = try XMLReader.parse("<Node><UptimeSeconds>\(text)</UptimeSeconds></Node>")
            let html = try #require(s.node.gateway).nodesTable([Gateway.NodeRow(member: member, state: state)], pages: false)
            #expect(html.contains("<td>?</td>"), "uptime \(text)")
        }
    }
}
