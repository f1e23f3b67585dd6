import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

/// The console's forms: `POST /path?form` with `verb`, `body` and `token` fields
/// (`application/x-www-form-urlencoded`, as any browser sends) becomes a request to the service;
/// the answer is the reply or fault as HTML — a fragment for the page's script (`&fragment`),
/// or a page of its own for a browser without JavaScript.
extension Gateway {
    func formReply(_ h: HTTPRequestHead, _ path: String, body: ByteBuffer, as header: Principal) async -> Response {
        let link = String(h.uri.prefix { $0 != "?" && $0 != "#" })
        let fragment = Gateway.queryItems(h.uri).contains { $0.name == "fragment" }
        func answer(_ html: String, _ status: HTTPResponseStatus = .ok) -> Response {
            if fragment { return Response(status: status, contentType: "text/html; charset=utf-8", body: Array(html.utf8)) }
            var page = ConsoleAssets.page(title: link, node: kernel.node, body: "<p><a href=\"/\">← the cluster</a> · <a href=\"\(escapeHTML(link))?view\">\(escapeHTML(link))</a></p><output class=\"result\">\(html)</output>")
            page.status = status
            return page
        }
        // A form from another site's page never gets here: the gateway refuses it on its head (RequestGuard.swift).
        let fields = Gateway.formFields(Array(buffer: body))
        guard let verb = fields["verb"].flatMap(Verb.init(name:)) else {
            return answer("<div class=\"fault\">InvalidForm: no verb, or one that is not a verb</div>", .badRequest)
        }
        var principal = header
        if let token = fields["token"], !token.isEmpty {
            guard let p = kernel.security.principal(forToken: token) else {
                return answer("<div class=\"fault\">Unauthorized: unknown token</div>", .unauthorized)
            }
            principal = p
        }
        var element: Element?
        let text = fields["body"]?.trimmingXMLSpace() ?? ""
        if !text.isEmpty {
            do { element = try XMLReader.parse(Array(text.utf8), limits: SOAP.limits) } catch {
                return answer("<div class=\"fault\">InvalidBody: the body is not XML: \(escapeHTML("\(error)"))</div>", .badRequest)
            }
        }
        let reply = await kernel.send(Message(verb, to: path, body: element), as: principal)
        if let f = reply.fault {
            return answer("<div class=\"fault\"><b>\(escapeHTML(f.subcode?.local ?? "\(f.code)"))</b>: \(escapeHTML(f.reason))</div>", Gateway.status(for: f))
        }
        var html = "<div class=\"ok\"><b>\(verb.rawValue)Response</b>"
        if let b = reply.body {
            html += StateView.html(b) + "<details><summary>XML</summary><pre>\(escapeHTML(XMLWriter.pretty(b)))</pre></details>"
        }
        return answer(html + "</div>")
    }

    /// `a=1&b=x+y%21` → ["a": "1", "b": "x y!"]; the first of a repeated name wins.
    static func formFields(_ bytes: [UInt8]) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in bytes.split(separator: UInt8(ascii: "&")) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecoded(parts[0])
            if fields[name] == nil { fields[name] = parts.count > 1 ? percentDecoded(parts[1]) : "" }
        }
        return fields
    }

    /// The items of a request target's query, decoded: `?events&path=%2Fkv` → [(events, ""), (path, /kv)].
    static func queryItems(_ uri: String) -> [(name: String, value: String)] {
        query(uri).split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (percentDecoded(Array(parts[0].utf8)), parts.count > 1 ? percentDecoded(Array(parts[1].utf8)) : "")
        }
    }

    /// A value for a query: what is not a letter, digit or `-._~` as `%XX`.
    static func queryEscaped(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-._~".utf8.contains(b) {
                out.append(Character(UnicodeScalar(b)))
            } else {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// `%XX` is a byte (and `+` a space, in forms and queries); a `%` without two hex digits stays as it is.
    static func percentDecoded<C: Collection<UInt8>>(_ bytes: C, plusIsSpace: Bool = true) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        while i != bytes.endIndex {
            let b = bytes[i]
            if plusIsSpace, b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), bytes.distance(from: i, to: bytes.endIndex) >= 3,
                      let hi = hex(bytes[bytes.index(i, offsetBy: 1)]), let lo = hex(bytes[bytes.index(i, offsetBy: 2)]) {
                out.append(hi << 4 | lo)
                i = bytes.index(i, offsetBy: 2)
            } else {
                out.append(b)
            }
            i = bytes.index(after: i)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
