import Infoset
import NIOCore
import NIOHTTP1
import ServiceKernel

extension Gateway {
    /// Answers an HTTP client's Subscribe: a chunked response whose first line is the
    /// SubscribeResponse envelope and each further line a notification envelope. It ends when the
    /// client goes away (the subscription is removed) or the service is dropped.
    func stream(_ request: Message, _ notifications: AsyncStream<Message>,
                _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
                _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) async throws {
        // A subscriber is quiet by nature: the idle timeout no longer applies.
        try? await connection.channel.pipeline.removeHandler(name: "idle").get()
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: SOAP.contentType)
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Server", value: "decos")
        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)))
        var first = Message.response(to: request, body: Element("SubscribeResponse", children: [.element(Element("Publisher", text: kernel.uris.authority + request.to))]))
        first.to = ""
        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: SOAP.encode(first) + [0x0A]))))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await n in notifications {
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: SOAP.encode(n) + [0x0A]))))
                }
                try await outbound.write(.end(nil))
            }
            group.addTask {
                // Nothing more is expected from the client; this ends when it hangs up.
                try await connection.channel.closeFuture.get()
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
