import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

extension Connection {
    /// Answers an HTTP client's Subscribe: a chunked response whose first line is the
    /// SubscribeResponse envelope and each further line a notification envelope. It ends when the
    /// client goes away (the subscription is removed) or the service is dropped.
    func startStream(_ request: Message, _ notifications: AsyncStream<Message>, _ channel: any Channel) {
        // A subscriber is quiet by nature: the idle timeout no longer applies.
        channel.pipeline.removeHandler(name: "idle", promise: nil)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: SOAP.contentType)
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Server", value: "decos")
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        var first = Message.response(to: request, body: Element("SubscribeResponse", children: [
            .element(Element("Publisher", text: gateway.kernel.uris.authority + request.to))]))
        first.to = ""
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: SOAP.encode(first) + [0x0A]))), promise: nil)
        stream = Task {
            for await n in notifications {
                channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(bytes: SOAP.encode(n) + [0x0A]))), promise: nil)
            }
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
