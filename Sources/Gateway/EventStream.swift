import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

/// `GET /?events&path=/@b/counter&path=/@a/kv…`: one streamed response (`text/event-stream`,
/// the Server-Sent Events format) that says which of those services changed, as they change —
/// `event: change` with `data: PATH VERB` — over subscriptions on this node or theirs. The
/// console fetches a changed block again; one stream serves a whole page, where a stream per
/// service would use up the browser's six connections to the node. A path the client may not
/// subscribe to is named in a `refused` event; the rest stream on.
extension Gateway {
    /// The most services one stream follows.
    static let maxEventPaths = 256

    func eventSources(_ h: HTTPRequestHead, as principal: Principal) async -> Outcome {
        let paths = Gateway.queryItems(h.uri).filter { $0.name == "path" }.map(\.value)
        guard !paths.isEmpty, paths.count <= Gateway.maxEventPaths else {
            return .reply(.fault(Fault(.sender, "InvalidQuery", "name 1 to \(Gateway.maxEventPaths) services as path=/… in the query (got \(paths.count))")))
        }
        var sources: [(path: String, stream: AsyncStream<Message>)] = []
        var refused: [(path: String, reason: String)] = []
        await withTaskGroup(of: (String, Result<AsyncStream<Message>, Fault>).self) { group in
            for path in Set(paths) {
                group.addTask { [kernel] in
                    do throws(Fault) { return (path, .success(try await kernel.subscribe(anywhere: Gateway.destination(path), as: principal))) } catch {
                        return (path, .failure(error))
                    }
                }
            }
            for await (path, result) in group {
                switch result {
                case .success(let s): sources.append((path, s))
                case .failure(let f): refused.append((path, f.reason))
                }
            }
        }
        return .events(sources, refused: refused)
    }
}

extension Connection {
    /// How often a quiet stream writes a comment: a client that vanished without closing is
    /// found when a write fails, and its subscriptions end.
    static let heartbeat = TimeAmount.seconds(25)

    func startEvents(_ sources: [(path: String, stream: AsyncStream<Message>)], refused: [(path: String, reason: String)], _ channel: any Channel) {
        channel.pipeline.removeHandler(name: "idle", promise: nil)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/event-stream; charset=utf-8")
        headers.add(name: "Cache-Control", value: "no-store")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Server", value: "decos")
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        // A page that stops reading is cut off with a last event saying so (StreamWriter.swift).
        let writer = StreamWriter(channel)
        @Sendable func write(_ text: String) {
            writer.write(Array(text.utf8), farewell: Array("event: cut\ndata: the page read more slowly than its services changed: load it again\n\n".utf8))
        }
        @Sendable func send(_ event: String, _ data: String) { write("event: \(event)\ndata: \(data)\n\n") }
        for r in refused { send("refused", "\(r.path) \(r.reason.split(whereSeparator: \.isNewline).joined(separator: " "))") }
        send("ready", "\(sources.count)")
        let heartbeat = channel.eventLoop.scheduleRepeatedTask(initialDelay: Connection.heartbeat, delay: Connection.heartbeat) { _ in
            write(":\n\n")
        }
        stream = Task {
            await withTaskGroup(of: Void.self) { group in
                for source in sources {
                    group.addTask {
                        for await n in source.stream {
                            send("change", "\(source.path) \(n.verb.rawValue)")
                            if writer.wasCut { return }
                        }
                    }
                }
            }
            heartbeat.cancel()
            // Every service it followed is gone: the stream ends.
            if !writer.wasCut { writer.end() }
        }
        channel.closeFuture.whenComplete { _ in heartbeat.cancel() }
    }
}
