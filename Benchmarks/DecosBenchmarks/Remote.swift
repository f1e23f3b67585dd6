import CAEAD
import Crypto
import Decos
import FoundationEssentials
import DistributingKernel
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Remote request/response and buffer transfer between two nodes on loopback, each against a raw
/// SwiftNIO TCP baseline measured in the same run: `decos-bench remote [calls|buffers|pipeline]`;
/// `remote sealing` compares encryption on with off instead.
func remoteBenchmark(only part: String? = nil) async throws {
    let cluster = LoopbackCluster()
    defer { cluster.remove() }
    func pair(encryption: Bool = true) async throws -> (Node, Node) {
        let attributes = #"requestTimeout="60" encryption="\#(encryption ? "on" : "off")""#
        let a = try await cluster.boot("a", examples: ["echo"], attributes: attributes)
        let b = try await cluster.boot("b", seed: a, examples: ["echo"], attributes: attributes)
        try await waitUntil(a, lists: ["decos://b/echo"])
        return (a, b)
    }
    if part == "sealing" { return try await sealingBenchmark(pair) }
    if part == "cipher" { return cipherBenchmark() }
    let (a, b) = try await pair()

    if part == "pipeline" {  // for a profiler: only the pipelined calls, a million of them
        print("remote    \(human(await pipelined(a, total: 1_000_000))) with 64 in flight")
        return
    }
    if part != "buffers" && part != "pipeline" { try await callBenchmark(a) }
    guard part == nil || part == "buffers" else {
        await a.network?.stop()
        await b.network?.stop()
        return
    }
    // Buffers as the node ships (encrypted), then unencrypted: the plane's own cost against the
    // raw stream, which seals nothing.
    let sealed = await bufferFigures(a)
    await a.network?.stop()
    await b.network?.stop()
    let (c, d) = try await pair(encryption: false)
    let open = await bufferFigures(c)
    await c.network?.stop()
    await d.network?.stop()
    let raw = try await rawStreamFigures()
    print("baseline  raw SwiftNIO TCP stream of 256 MiB, medians of 5: \(fmt(raw.discarded, 2)) GB/s; into a fresh 256 MiB buffer: \(fmt(raw.fresh, 2)) GB/s; into a buffer already touched: \(fmt(raw.touched, 2)) GB/s")
    for (label, f) in [("encrypted, as shipped", sealed), ("unencrypted", open)] {
        print("buffer    256 MiB there and back through the data plane, \(label) (bytes moved both ways over time): \(fmt(f.fresh, 2)) GB/s into fresh memory (the first); \(fmt(f.recycled, 2)) GB/s into recycled memory (median of 5)")
        print("ratio     fresh: \(fmt(f.fresh / raw.discarded * 100, 0))% of the raw stream, \(fmt(f.fresh / raw.fresh * 100, 0))% of the raw stream into fresh memory; recycled: \(fmt(f.recycled / raw.discarded * 100, 0))% of the raw stream, \(fmt(f.recycled / raw.touched * 100, 0))% of the raw stream into touched memory")
    }
}

/// p50 and p99 of one call at a time, in µs.
func callLatency(_ a: Node, calls: Int = 20_000) async -> (p50: Double, p99: Double) {
    let request = Message(.submit, to: "decos://b/echo", body: Element("P", text: String(repeating: "x", count: 100)))
    for _ in 0..<2000 { _ = await a.kernel.send(request, as: .system) }
    var samples: [Double] = []
    for _ in 0..<calls {
        let t = ContinuousClock.now
        let r = await a.kernel.send(request, as: .system)
        precondition(r.fault == nil, "\(r.fault!)")
        samples.append(seconds(ContinuousClock.now - t) * 1e6)
    }
    samples.sort()
    return (samples[samples.count / 2], samples[samples.count * 99 / 100])
}

/// The cost of sealing frames: the same calls and buffers between a pair with encryption on and
/// a pair with it off, alternating, three rounds (`decos-bench remote sealing`).
func sealingBenchmark(_ pair: (Bool) async throws -> (Node, Node)) async throws {
    let blob = DataBuffer([UInt8](repeating: 7, count: 256 << 20))
    for round in 1...3 {
        var figures: [Bool: (p50: Double, rate: Double, gbps: Double)] = [:]
        for encryption in [false, true] {
            let (a, b) = try await pair(encryption)
            let latency = await callLatency(a, calls: 10_000)
            let rate = await pipelined(a, total: 100_000)
            var speeds: [Double] = []
            for _ in 0..<5 {
                let t = ContinuousClock.now
                speeds.append(Double(2 * blob.count) / seconds(await thereAndBack(a, blob) - t) / 1e9)
            }
            figures[encryption] = (latency.p50, rate, median(speeds))
            print("round \(round) encryption \(encryption ? "on " : "off"): p50 \(fmt(latency.p50, 1)) µs, \(human(rate)) with 64 in flight, 256 MiB buffer there and back \(fmt(median(speeds), 2)) GB/s")
            await a.network?.stop()
            await b.network?.stop()
        }
        let on = figures[true]!, off = figures[false]!
        print("ratio   round \(round), on/off: p50 \(fmt(on.p50 / off.p50))x, throughput \(fmt(on.rate / off.rate))x, buffer \(fmt(on.gbps / off.gbps))x")
    }
}

func callBenchmark(_ a: Node) async throws {
    let (p50, p99) = await callLatency(a)

    let concurrency = 64
    let rate = await pipelined(a, total: 200_000, concurrency: concurrency)

    let floor = try await rawEcho(size: 104)
    print("remote    Submit to decos://b/echo, 100-byte body, loopback: p50 \(fmt(p50, 0)) µs, p99 \(fmt(p99, 0)) µs; \(human(rate)) with \(concurrency) in flight")
    print("baseline  raw SwiftNIO TCP echo, 104-byte frames: p50 \(fmt(floor.p50, 0)) µs, p99 \(fmt(floor.p99, 0)) µs; \(human(floor.rate)) pipelined")
    print("ratio     p50 \(fmt(p50 / floor.p50))x the raw echo; throughput \(fmt(rate / floor.rate))x")
}

/// Calls per second with `concurrency` calls in flight on the one connection.
func pipelined(_ a: Node, total: Int, concurrency: Int = 64) async -> Double {
    let request = Message(.submit, to: "decos://b/echo", body: Element("P", text: String(repeating: "x", count: 100)))
    let start = ContinuousClock.now
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                for _ in 0..<(total / concurrency) { _ = await a.kernel.send(request, as: .system) }
            }
        }
    }
    return Double(total) / seconds(ContinuousClock.now - start)
}

/// A 256 MiB buffer referenced by one message, pulled over the data link by b, whose echo returns
/// it, pulled back by a: 512 MiB moved per call, in GB/s. One call lasts about 0.3 s, so the
/// figure for recycled memory is the median of five.
func bufferFigures(_ a: Node) async -> (fresh: Double, recycled: Double) {
    let size = 256 << 20
    let blob = DataBuffer([UInt8](repeating: 7, count: size))
    func transfer() async -> Double {
        let t = ContinuousClock.now
        return Double(2 * size) / seconds(await thereAndBack(a, blob) - t) / 1e9
    }
    // The first lands in fresh memory; once it is gone, the next ones land in recycled memory.
    let fresh = await transfer()
    var recycled: [Double] = []
    for _ in 0..<5 { recycled.append(await transfer()) }
    return (fresh, median(recycled))
}

/// The raw SwiftNIO stream of 256 MiB, medians of five: bytes discarded, copied into a fresh
/// buffer, and into one touched beforehand.
func rawStreamFigures() async throws -> (discarded: Double, fresh: Double, touched: Double) {
    var stream: [Double] = [], landed: [Double] = [], warm: [Double] = []
    for _ in 0..<5 {
        stream.append(try await rawStream(size: 256 << 20))
        landed.append(try await rawStream(size: 256 << 20, land: true))
        warm.append(try await rawStream(size: 256 << 20, land: true, prefault: true))
    }
    return (median(stream), median(landed), median(warm))
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// One call that sends `blob` to b's echo and gets it back; when it ended.
func thereAndBack(_ a: Node, _ blob: DataBuffer) async -> ContinuousClock.Instant {
    let r = await a.kernel.send(Message(.submit, to: "decos://b/echo", buffers: [BufferRef(id: "blob", buffer: blob)]), as: .system)
    precondition(r.fault == nil, "\(r.fault!)")
    precondition(r.buffers.first?.buffer.count == blob.count, "the echo's reply did not bring the buffer back whole")
    return ContinuousClock.now
}

/// Echoes every byte back.
final class EchoBack: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.writeAndFlush(data, promise: nil) }
}

/// Sends fixed-size frames and measures round trips, on the client's event loop (the fastest a
/// SwiftNIO client can be): first one at a time, then `window` in flight.
final class PingPong: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let size: Int
    let count: Int
    let window: Int
    var pending = 0
    var sent = 0
    var received = 0
    var starts: [ContinuousClock.Instant] = []
    var samples: [Double] = []
    let done: EventLoopPromise<[Double]>

    init(size: Int, count: Int, window: Int, done: EventLoopPromise<[Double]>) {
        self.size = size
        self.count = count
        self.window = window
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        for _ in 0..<window { send(context) }
    }

    func send(_ context: ChannelHandlerContext) {
        guard sent < count else { return }
        sent += 1
        starts.append(.now)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(repeating: 1, count: size)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending += unwrapInboundIn(data).readableBytes
        while pending >= size {
            pending -= size
            samples.append(seconds(ContinuousClock.now - starts[received]) * 1e6)
            received += 1
            if received == count { done.succeed(samples); return }
            send(context)
        }
    }
}

func rawEcho(size: Int) async throws -> (p50: Double, p99: Double, rate: Double) {
    let group = MultiThreadedEventLoopGroup.singleton
    let server = try await ServerBootstrap(group: group)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoBack()) } }
        .bind(host: "127.0.0.1", port: 0).get()
    func run(count: Int, window: Int) async throws -> ([Double], Double) {
        let done = group.any().makePromise(of: [Double].self)
        let start = ContinuousClock.now
        let client = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PingPong(size: size, count: count, window: window, done: done))
                }
            }
            .connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        let samples = try await done.futureResult.get()
        let rate = Double(count) / seconds(ContinuousClock.now - start)
        try await client.close()
        return (samples, rate)
    }
    var (lat, _) = try await run(count: 20_000, window: 1)
    let (_, rate) = try await run(count: 200_000, window: 64)
    try await server.close()
    lat.sort()
    return (lat[lat.count / 2], lat[lat.count * 99 / 100], rate)
}

/// Counts bytes until `size` have arrived; with `land`, copies them into a fresh buffer of that
/// size as they come (what any transfer into the receiver's memory must do at the least).
final class Drain: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var received = 0
    let size: Int
    let done: EventLoopPromise<Void>
    var destination: [UInt8]
    init(size: Int, land: Bool, prefault: Bool, done: EventLoopPromise<Void>) {
        self.size = size
        self.done = done
        destination = !land ? [] : prefault ? [UInt8](repeating: 0, count: size) : [UInt8](unsafeUninitializedCapacity: size) { _, n in n = size }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let b = unwrapInboundIn(data)
        if !destination.isEmpty {
            let at = received
            destination.withUnsafeMutableBytes { d in b.withUnsafeReadableBytes { s in (d.baseAddress! + at).copyMemory(from: s.baseAddress!, byteCount: s.count) } }
        }
        received += b.readableBytes
        if received >= size { done.succeed(()) }
    }
}

/// GB/s of one TCP stream on loopback: the sender writes 1 MiB chunks, four in flight, as the
/// data plane does; the receiver discards the bytes, or with `land` copies them into fresh memory
/// (with `prefault`, memory whose pages were touched before the clock starts).
func rawStream(size: Int, land: Bool = false, prefault: Bool = false) async throws -> Double {
    let group = MultiThreadedEventLoopGroup.singleton
    let done = group.any().makePromise(of: Void.self)
    // Made before the clock starts, so a prefaulted destination is touched outside the timing.
    let drain = Drain(size: size, land: land, prefault: prefault, done: done)
    let server = try await ServerBootstrap(group: group)
        .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(drain) } }
        .bind(host: "127.0.0.1", port: 0).get()
    let client = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
    let source = [UInt8](repeating: 7, count: size)
    let start = ContinuousClock.now
    var inFlight: [EventLoopFuture<Void>] = []
    var offset = 0
    while offset < size {
        let end = min(offset + (1 << 20), size)
        var b = client.allocator.buffer(capacity: end - offset)
        _ = source.withUnsafeBytes { b.writeBytes(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
        inFlight.append(client.writeAndFlush(b))
        if inFlight.count >= 4 { try await inFlight.removeFirst().get() }
        offset = end
    }
    try await done.futureResult.get()
    let rate = Double(size) / seconds(ContinuousClock.now - start) / 1e9
    try await client.close()
    try await server.close()
    return rate
}

/// What sealing and opening one frame costs, by size (`decos-bench remote cipher`): libcrypto's
/// AES-GCM as the frames use it, the floor under the sealed figures, beside swift-crypto's AEADs
/// (which re-key and allocate on every call: why the frames do not use them).
func cipherBenchmark() {
    let key = SymmetricKey(size: .bits256)
    for size in [100, 1 << 20] {
        let payload = [UInt8](repeating: 7, count: size), header = [UInt8](repeating: 1, count: 6)
        let n = size > 1000 ? 500 : 200_000
        func measure(_ name: String, seal: () -> (Data, Data, Data), open: (Data, Data, Data) -> Void) {
            var boxes: [(Data, Data, Data)] = []
            boxes.reserveCapacity(n)
            let t0 = ContinuousClock.now
            for _ in 0..<n { boxes.append(seal()) }
            let t1 = ContinuousClock.now
            for b in boxes { open(b.0, b.1, b.2) }
            let t2 = ContinuousClock.now
            let sealT = seconds(t1 - t0) / Double(n), openT = seconds(t2 - t1) / Double(n)
            print("cipher  \(name) \(size) B: seal \(fmt(sealT * 1e6, 2)) µs (\(fmt(Double(size) / sealT / 1e9, 2)) GB/s), open \(fmt(openT * 1e6, 2)) µs (\(fmt(Double(size) / openT / 1e9, 2)) GB/s)")
        }
        measure("AES-256-GCM (swift-crypto)", seal: {
            let b = try! AES.GCM.seal(payload, using: key, authenticating: header)
            return (Data(b.nonce), b.ciphertext, b.tag)
        }, open: { nonce, c, t in
            _ = try! AES.GCM.open(AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: c, tag: t), using: key, authenticating: header)
        })
        // What the sealed frames use: libcrypto through CAEAD, keyed once, in place.
        let context = key.withUnsafeBytes { caead_new($0.bindMemory(to: UInt8.self).baseAddress!) }!
        defer { caead_free(context) }
        var buffer = payload, tag = [UInt8](repeating: 0, count: 16), nonce = [UInt8](repeating: 0, count: 12)
        let t0 = ContinuousClock.now
        for i in 0..<n { nonce[11] = UInt8(truncatingIfNeeded: i); _ = caead_seal(context, nonce, header, 6, &buffer, size, &tag) }
        let t1 = ContinuousClock.now
        for i in 0..<n { nonce[11] = UInt8(truncatingIfNeeded: i); _ = caead_begin(context, nonce, header, 6); _ = caead_update(context, &buffer, size); _ = caead_finish(context, tag) }
        let t2 = ContinuousClock.now
        let sealT = seconds(t1 - t0) / Double(n), openT = seconds(t2 - t1) / Double(n)
        print("cipher  AES-256-GCM (libcrypto, in place, keyed once) \(size) B: seal \(fmt(sealT * 1e6, 2)) µs (\(fmt(Double(size) / sealT / 1e9, 2)) GB/s), open \(fmt(openT * 1e6, 2)) µs (\(fmt(Double(size) / openT / 1e9, 2)) GB/s)")
        measure("ChaCha20-Poly1305 (swift-crypto)", seal: {
            let b = try! ChaChaPoly.seal(payload, using: key, authenticating: header)
            return (Data(b.nonce), b.ciphertext, b.tag)
        }, open: { nonce, c, t in
            _ = try! ChaChaPoly.open(ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: nonce), ciphertext: c, tag: t), using: key, authenticating: header)
        })
    }
}
