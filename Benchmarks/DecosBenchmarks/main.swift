// Decos benchmarks. Each figure is printed beside a baseline measured in the same run.
// Run through Benchmarks/run.sh (release build, pinned to one core). Modes: all, dispatch, xml,
// probe (where dispatch time goes), http-floor (the gateway baseline), idle (the RSS baseline),
// remote (two nodes on loopback against raw SwiftNIO TCP), swim [NODES] [LOSS] (membership and
// namespace spread in the simulator), soak [CALLS] [BUFFERS] [LOSS] (three nodes under loss, RSS
// flat), remote sealing / remote cipher (the cost of encryption between nodes), durable [DIR]
// (durable Upserts against memory and SQLite's own rate, and a restart with a million keys).
import Decos
import DistributingKernel
#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Infoset
import ServiceKernel
import StandardServices

/// The same work as a Get on /counter (return the state's cached infoset), as a bare actor method.
actor BareCounter {
    @ServiceState var state = Counter.CounterState(value: 0)
    func get() throws(Fault) -> Element { try $state.infoset() }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// Best of `rounds` timings of `body`, which does `n` operations.
func measure(rounds: Int = 5, _ n: Int, _ body: () async throws -> Void) async rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<rounds {
        let start = ContinuousClock.now
        try await body()
        best = min(best, seconds(ContinuousClock.now - start))
    }
    return Double(n) / best
}

func fmt(_ v: Double, _ digits: Int = 2) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (v * p).rounded() / p
    return String(r)
}

func human(_ rate: Double) -> String {
    rate >= 1e6 ? "\(fmt(rate / 1e6)) M/s" : "\(fmt(rate / 1e3)) k/s"
}

func dispatchBenchmark() async throws {
    // The kernel as it ships (metrics on), and one with <Gateway metrics="off">: what counting costs.
    func kernel(metrics: Bool) async throws -> Kernel {
        let k = Kernel(node: "bench", security: SecurityManager(policy: nil, exposed: false), contracts: StandardContracts.all,
                       metrics: NodeMetrics(enabled: metrics))
        try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
        return k
    }
    let on = try await kernel(metrics: true), off = try await kernel(metrics: false)
    let bare = BareCounter()
    let n = 2_000_000
    let request = Message(.get, to: "/counter")
    // Warm up every path.
    for _ in 0..<10_000 { _ = await on.send(request, as: .system); _ = await off.send(request, as: .system); _ = try await bare.get() }
    let baseline = try await measure(n) {
        for _ in 0..<n { _ = try await bare.get() }
    }
    func dispatch(_ k: Kernel) async -> Double {
        await measure(n) {
            for _ in 0..<n {
                let reply = await k.send(request, as: .system)
                precondition(reply.fault == nil)
            }
        }
    }
    let dispatched = await dispatch(on), uncounted = await dispatch(off)
    print("dispatch  Get /counter through the kernel: \(human(dispatched))  (\(fmt(1e9 / dispatched, 0)) ns each)")
    print("          the same, metrics off:          \(human(uncounted))  (\(fmt(1e9 / uncounted, 0)) ns each)")
    print("baseline  bare actor call, same work:       \(human(baseline))  (\(fmt(1e9 / baseline, 0)) ns each)")
    print("ratio     dispatch cost / bare call:         \(fmt(baseline / dispatched))x (metrics off \(fmt(baseline / uncounted))x)")
}

/// A document like a busy service's state: many small entries with attributes, text and escapes.
func sampleDocument(entries: Int) -> [UInt8] {
    var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><KVState xmlns=\"urn:decos:examples:kv\" xmlns:m=\"urn:meta\">"
    for i in 0..<entries {
        s += "<Entry m:rev=\"\(i)\"><Key>key-\(i)</Key><Value>value &amp; more text for entry \(i), with &lt;escapes&gt;</Value></Entry>"
    }
    s += "</KVState>"
    return Array(s.utf8)
}

func xmlBenchmark() throws {
    let doc = sampleDocument(entries: 20_000)
    let mb = Double(doc.count) / 1e6
    var element = try XMLReader.parse(doc)
    var best = Double.infinity
    for _ in 0..<5 {
        let start = ContinuousClock.now
        element = try XMLReader.parse(doc)
        best = min(best, seconds(ContinuousClock.now - start))
    }
    let read = mb / best
    best = .infinity
    var written = 0
    for _ in 0..<5 {
        let start = ContinuousClock.now
        written = XMLWriter.bytes(element).count
        best = min(best, seconds(ContinuousClock.now - start))
    }
    let write = Double(written) / 1e6 / best
    // Baseline: one pass over the same bytes doing the least a reader must (find each '<').
    best = .infinity
    var tags = 0
    for _ in 0..<5 {
        let start = ContinuousClock.now
        tags = doc.withUnsafeBufferPointer { b in var c = 0; for x in b where x == UInt8(ascii: "<") { c += 1 }; return c }
        best = min(best, seconds(ContinuousClock.now - start))
    }
    let scan = mb / best
    print("xml read  \(fmt(mb)) MB document, \(tags) tags: \(fmt(read, 1)) MB/s  (byte scan baseline \(fmt(scan, 0)) MB/s)")
    print("xml write \(fmt(Double(written) / 1e6)) MB: \(fmt(write, 1)) MB/s")
}

func probe() async throws {
    let kernel = Kernel(node: "bench", security: SecurityManager(policy: nil, exposed: false), contracts: StandardContracts.all)
    let reg = try await kernel.create(ServiceConfig(contract: Counter.contract, name: "/counter"))
    let n = 2_000_000
    let request = Message(.get, to: "/counter")
    let lookup = await measure(n) { for _ in 0..<n { precondition(kernel.uris.lookup("/counter") != nil) } }
    let response = await measure(n) { for _ in 0..<n { precondition(Message.response(to: request, body: nil).fault == nil) } }
    let handle = try await measure(n) { for _ in 0..<n { _ = try await reg.service.handle(Request(message: request, principal: .system)) } }
    print("lookup \(fmt(1e9/lookup)) ns, response \(fmt(1e9/response)) ns, handle \(fmt(1e9/handle)) ns, size \(MemoryLayout<Message>.size)")
}

setvbuf(stdout, nil, _IOLBF, 0)
// As in the decos binary: a loop per core it may run on, and tasks run on the loops.
Executors.fitLoopsToCPUs()
Executors.runTasksOnEventLoops()
let which = CommandLine.arguments.dropFirst().first ?? "all"
let task = Task.detached {
    if which == "all" || which == "dispatch" { try await dispatchBenchmark() }
    if which == "all" || which == "xml" { try xmlBenchmark() }
    if which == "probe" { try await probe() }
    if which == "http-floor" { try await httpFloor() }
    if which == "idle" { try await Task.sleep(for: .seconds(3600)) }
    if which == "modindex" { moduleIndexBenchmark() }
    if which == "remote" { try await remoteBenchmark(only: CommandLine.arguments.dropFirst(2).first) }
    if which == "soak" {
        let args = CommandLine.arguments.dropFirst(2).map { Int($0) }
        try await soakBenchmark(calls: (args.first ?? nil) ?? 1_000_000, buffers: (args.dropFirst().first ?? nil) ?? 1000,
                                loss: (args.dropFirst(2).first ?? nil) ?? 5)
    }
    if which == "durable" { try await durableBenchmark(directory: CommandLine.arguments.dropFirst(2).first ?? "/var/tmp") }
    if which == "swim" {
        let args = CommandLine.arguments.dropFirst(2)
        swimBenchmark(nodes: args.first.flatMap(Int.init) ?? 1000, loss: args.dropFirst().first.flatMap(Double.init) ?? 0.05)
    }
}
try await task.value
