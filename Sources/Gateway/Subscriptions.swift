import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

extension Connection {
    /// Answers an HTTP client's Subscribe: a chunked response whose first line is the
    /// SubscribeResponse envelope and each further line a notification envelope. It ends when the
    /// client goes away (the subscription is removed) or the service is dropped, or when the client
    /// reads too slowly: its last line is then a `TooSlow` fault (StreamWriter.swift).
    func startStream(_ request: Message, _ notifications: AsyncStream<Message>, _ channel: any Channel) {
        // A subscriber is quiet by nature: the idle timeout no longer applies.
        channel.pipeline.removeHandler(name: "idle", promise: nil)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: SOAP.contentType)
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Server", value: "decos")
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        var first = Message.response(to: request, body: Element("SubscribeResponse", children: [
            .element(Element("Publisher", text: gateway.kernel.absolute(request.to) ?? request.to))]))
        first.to = ""
        let writer = StreamWriter(channel)
        writer.write(SOAP.encode(first) + [0x0A], farewell: [])
        stream = Task {
            for await n in notifications {
                guard writer.write(SOAP.encode(n) + [0x0A], farewell: Connection.tooSlow(request)) else { return }
            }
            writer.end()
        }
    }

    /// The last line to a subscriber cut off for reading too slowly.
    static func tooSlow(_ request: Message) -> [UInt8] {
        var m = Message.faulted(Fault(.receiver, "TooSlow",
                                      "the subscriber read more slowly than \(request.to) changed (over \(StreamWriter.defaultLimit) bytes waited): subscribe again, and Get the state"),
                                replyingTo: request)
        m.to = ""
        return SOAP.encode(m) + [0x0A]
    }
}
