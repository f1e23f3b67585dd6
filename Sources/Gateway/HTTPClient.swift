import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A small HTTP/1.1 client for `decos ctl` and the tests: one request per connection.
public enum HTTPClient {
    public struct URL: Sendable, Hashable {
        public var host: String
        public var port: Int
        public var path: String
        /// `https://`: TLS to the server.
        public var secure: Bool

        /// Parses `http://host[:port]/path` or `https://…`; the port defaults to 80 or 443.
        public init?(_ text: String) {
            secure = text.hasPrefix("https://")
            guard secure || text.hasPrefix("http://") else { return nil }
            let rest = text.dropFirst(secure ? 8 : 7)
            let defaultPort = secure ? 443 : 80
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = rest[..<slash]
            path = slash == rest.endIndex ? "/" : String(rest[slash...])
            if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : defaultPort
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                port = Int(authority[authority.index(after: colon)...]) ?? -1
            } else {
                host = String(authority)
                port = defaultPort
            }
            guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        }
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends one request. `onBodyChunk`, when given, sees the body as it arrives (a subscription stream)
    /// and the returned body is left empty. An `https://` URL's server is checked against `cacert`
    /// (a PEM file), or the system's CAs without one.
    public static func send(_ method: HTTPMethod, _ url: URL, headers: [(String, String)] = [], body: [UInt8] = [], cacert: String? = nil,
                            onBodyChunk: (@Sendable ([UInt8]) async throws -> Void)? = nil) async throws -> Response {
        let tls = url.secure ? try TLS.clientContext(cacert: cacert) : nil
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: url.host, port: url.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // An address is checked against the certificate's IP names (and sent no SNI).
                        let name = (try? SocketAddress(ipAddress: url.host, port: 0)) == nil ? url.host : nil
                        if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name)) }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Failure(description: "cannot connect to \(url.host):\(url.port): \(error)")
        }
        do {
            return try await exchange(on: channel, method, url, headers: headers, body: body, onBodyChunk: onBodyChunk)
        } catch let e as NIOSSLError {
            throw Failure(description: "TLS with \(url.host):\(url.port) failed: \(TLS.explain(e))")
        } catch let e as NIOSSLExtraError {
            throw Failure(description: "TLS with \(url.host):\(url.port) failed: \(e)")
        }
    }

    private static func exchange(on channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>, _ method: HTTPMethod, _ url: URL,
                                 headers: [(String, String)], body: [UInt8],
                                 onBodyChunk: (@Sendable ([UInt8]) async throws -> Void)?) async throws -> Response {
        try await channel.executeThenClose { inbound, outbound in
            var h = HTTPHeaders()
            // A caller's own Host (a test of the gateway's checks) stands instead of the URL's.
            if !headers.contains(where: { $0.0.lowercased() == "host" }) { h.add(name: "Host", value: "\(url.host):\(url.port)") }
            h.add(name: "Content-Length", value: String(body.count))
            h.add(name: "Connection", value: "close")
            for (n, v) in headers { h.add(name: n, value: v) }
            try await outbound.write(contentsOf: [
                .head(HTTPRequestHead(version: .http1_1, method: method, uri: url.path, headers: h)),
                .body(.byteBuffer(ByteBuffer(bytes: body))),
                .end(nil),
            ])
            var response = Response(status: 0, headers: [], body: [])
            for try await part in inbound {
                switch part {
                case .head(let head):
                    response.status = Int(head.status.code)
                    response.headers = head.headers.map { ($0.name, $0.value) }
                case .body(let chunk):
                    if let onBodyChunk { try await onBodyChunk(Array(buffer: chunk)) } else { response.body += Array(buffer: chunk) }
                case .end:
                    return response
                }
            }
            throw Failure(description: "\(url.host):\(url.port) closed the connection before the response ended")
        }
    }
}
