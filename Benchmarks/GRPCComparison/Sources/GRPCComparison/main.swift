import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// Bytes in, the same bytes out: no protobuf, so serialization costs as little as Decos's binary infoset.
struct Identity: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

let echo = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Get")

struct EchoService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: echo, deserializer: Identity(), serializer: Identity()) { request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(single: ServerResponse(message: single.message))
        }
    }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

let payload = [UInt8](repeating: 120, count: 100)
let server = GRPCServer(transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
                        services: [EchoService()])
try await withThrowingDiscardingTaskGroup { group in
    group.addTask { try await server.serve() }
    guard let address = try await server.listeningAddress?.ipv4 else { fatalError("the gRPC server did not bind") }
    try await withGRPCClient(transport: .http2NIOPosix(target: .ipv4(address: address.host, port: address.port), transportSecurity: .plaintext)) { client in
        @Sendable func call() async throws {
            try await client.unary(request: ClientRequest(message: payload), descriptor: echo, serializer: Identity(),
                                   deserializer: Identity(), options: .defaults) { response in _ = try response.message }
        }
        for _ in 0..<2000 { try await call() }
        var samples: [Double] = []
        for _ in 0..<20_000 {
            let t = ContinuousClock.now
            try await call()
            samples.append(seconds(ContinuousClock.now - t) * 1e6)
        }
        samples.sort()
        let total = 50_000, concurrency = 64
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<concurrency { g.addTask { for _ in 0..<(total / concurrency) { try await call() } } }
            try await g.waitForAll()
        }
        let rate = Double(total / concurrency * concurrency) / seconds(ContinuousClock.now - start)
        print("grpc      grpc-swift-2 unary, 100-byte message, loopback: p50 \(Int(samples[samples.count / 2])) µs, p99 \(Int(samples[samples.count * 99 / 100])) µs; \(Int(rate)) calls/s with \(concurrency) in flight")
    }
    server.beginGracefulShutdown()
}
