import NIOHTTP1
import ServiceKernel
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the gateway refuses before it reads a body or asks the kernel anything: requests a browser
/// was tricked into sending (docs/security.md, "A web page in your browser").
///
/// - `Host` must be a name the node answers to. A DNS-rebinding page re-points its own name at the
///   node, so the browser calls it same-origin, but it still sends that name as `Host`: only IP
///   literals (no DNS behind them), `localhost` (resolved by the browser itself) and the names in
///   `<Gateway hosts="…">` pass. The port is not compared: a browser always sends the port it
///   connected to, and a port forwarded to the node (QEMU's hostfwd) differs from the one it binds.
///   A request with no `Host` (HTTP/1.0) is not from a browser and passes.
/// - A request that may change something (anything but GET and HEAD) from another site's page is
///   refused: its `Origin` names another origin, or `Sec-Fetch-Site` says cross-site or same-site.
///   A SOAP POST needs a SOAP content type, which a browser sends cross-origin only after a CORS
///   preflight this gateway never answers; forms (`?form`) need positive proof of the same origin.
extension Gateway {
    /// The refusal for `h`, or nil when it may go on.
    func guardRefusal(_ h: HTTPRequestHead) -> (Fault, HTTPResponseStatus)? {
        if let host = h.headers.first(name: "host"), !answers(toHost: host) {
            return (Fault(.sender, "MisdirectedRequest",
                          "this node does not answer to the name \(host): use its address, localhost, or add the name to <Gateway hosts=\"…\">"),
                    .misdirectedRequest)
        }
        guard h.method != .GET, h.method != .HEAD else { return nil }
        let form = Gateway.queryItems(h.uri).contains { $0.name == "form" }
        switch Gateway.site(of: h, tls: binding.tls) {
        case .sameOrigin: return nil
        case .unknown where !form: return nil
        case .unknown:
            return (Fault(.sender, "Forbidden", "a form must come from this node's own console page (its Origin, or Sec-Fetch-Site: same-origin)"), .forbidden)
        case .other(let origin):
            return (Fault(.sender, "Forbidden", "a request from \(origin) may not act on this node"), .forbidden)
        }
    }

    /// Whether `host` (a `Host` header: `name`, `name:port`, `[v6]:port`) names this node.
    func answers(toHost host: String) -> Bool {
        let name = Gateway.hostName(host)
        return name == "localhost" || Gateway.isIPLiteral(name) || binding.hosts.contains { Gateway.hostName($0) == name }
    }

    /// The host of a `Host` header or an origin's authority, lower-cased, without port, brackets or a final dot.
    static func hostName(_ host: String) -> String {
        // Most names come lower-case and unpadded (an address, localhost): kept as they are.
        let plain = !host.utf8.contains { ($0 >= 0x41 && $0 <= 0x5A) || $0 >= 0x80 || $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        var h = Substring(plain ? host : host.trimmingXMLSpace().lowercased())
        if h.hasPrefix("[") {
            h = h.dropFirst().prefix { $0 != "]" }
        } else if let colon = h.lastIndex(of: ":") {
            h = h[..<colon]
        }
        while h.hasSuffix(".") { h = h.dropLast() }
        return String(h)
    }

    static func isIPLiteral(_ name: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }

    enum Site: Equatable {
        case sameOrigin
        /// Neither header says: a client that is not a browser (curl, decos ctl), or a very old one.
        case unknown
        case other(String)
    }

    /// Where the page that sent `h` came from, as the browser says it: `Origin` first, else `Sec-Fetch-Site`.
    static func site(of h: HTTPRequestHead, tls: Bool) -> Site {
        if let origin = h.headers.first(name: "origin") {
            let own = (tls ? "https://" : "http://") + (h.headers.first(name: "host") ?? "").lowercased()
            return origin.lowercased() == own ? .sameOrigin : .other(origin)
        }
        switch h.headers.first(name: "sec-fetch-site")?.lowercased() {
        case nil: return .unknown
        // "none": the user typed the address or used a bookmark.
        case "same-origin", "none": return .sameOrigin
        case let other?: return .other("a \(other) page")
        }
    }
}
