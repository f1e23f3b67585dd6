import Synchronization
import Decos
import DistributingKernel
#if canImport(Glibc)
import Glibc
#endif

/// A soak: three nodes in this process on loopback, LOSS% of every packet to or from their
/// cluster ports (TCP and UDP) dropped at random by nftables, while node a makes CALLS remote
/// Updates (64 in flight, to b's and c's counters in turn) and BUFFERS remote Submits that each
/// carry a 1 MiB buffer. Prints progress, the outcome of every call, whether the counters moved
/// exactly once per reply, and the process's RSS after warming up and at the end
/// (`decos-bench soak [CALLS] [BUFFERS] [LOSS]`, defaults 1,000,000, 1,000 and 5; needs root for
/// nftables, and runs without loss otherwise).
func soakBenchmark(calls: Int, buffers: Int, loss: Int) async throws {
    let cluster = LoopbackCluster()
    defer { cluster.remove() }
    let a = try await cluster.boot("a", examples: ["counter", "echo"], attributes: #"requestTimeout="30""#)
    let b = try await cluster.boot("b", seed: a, examples: ["counter", "echo"], attributes: #"requestTimeout="30""#)
    let c = try await cluster.boot("c", seed: a, examples: ["counter", "echo"], attributes: #"requestTimeout="30""#)
    let targets = ["decos://b", "decos://c"]
    try await waitUntil(a, lists: targets.map { $0 + "/echo" })

    let ports = [a, b, c].map { String($0.clusterAddress!.port!) }.joined(separator: ", ")
    let table = "decos-soak-\(getpid())"
    if loss > 0 {
        let rules = ["add table inet \(table)",
                     "add chain inet \(table) in { type filter hook input priority 0 ; }",
                     "add rule inet \(table) in iifname lo meta l4proto { tcp, udp } th dport { \(ports) } numgen random mod 100 < \(loss) drop",
                     "add rule inet \(table) in iifname lo meta l4proto { tcp, udp } th sport { \(ports) } numgen random mod 100 < \(loss) drop"]
        for r in rules where system("nft '\(r)'") != 0 { print("soak      cannot add nftables rules (root?): running without loss"); break }
    }
    defer { if loss > 0 { _ = system("nft delete table inet \(table) 2>/dev/null") } }

    let increment = try XMLReader.parse("<Increment><By>1</By></Increment>")
    let blob = DataBuffer((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    let reasons = FaultReasons()
    func counted(_ reply: Message) -> Bool {
        guard let f = reply.fault else { return true }
        reasons.count(f.reason)
        return false
    }
    func update(_ i: Int) async -> Bool {
        counted(await a.kernel.send(Message(.update, to: targets[i % 2] + "/counter", body: increment), as: .system))
    }
    func transfer(_ i: Int) async -> Bool {
        counted(await a.kernel.send(Message(.submit, to: targets[i % 2] + "/echo", body: Element("Blob"),
                                            buffers: [BufferRef(id: "blob", buffer: blob)]), as: .system))
    }
    // Warm up (its calls count too), then take the baseline RSS.
    var ok = 0, faults = 0
    for i in 0..<2000 { if await update(i) { ok += 1 } else { faults += 1 } }
    for i in 0..<10 { _ = await transfer(i) }
    let rss0 = rssKiB()
    print("soak      \(calls) calls and \(buffers) 1 MiB buffers, \(loss)% loss on the cluster ports; RSS after warm-up \(rss0 / 1024) MiB")

    let start = ContinuousClock.now
    let buffersTask = Task {
        var ok = 0, faults = 0
        for i in 0..<buffers { if await transfer(i) { ok += 1 } else { faults += 1 } }
        return (ok, faults)
    }
    let concurrency = 64, step = max(calls / 10, 1)
    var done = 0
    while done < calls {
        let batch = min(step, calls - done), first = done
        let (o, f) = await withTaskGroup(of: (Int, Int).self) { group in
            for w in 0..<concurrency {
                group.addTask {
                    var o = 0, f = 0
                    for i in stride(from: w, to: batch, by: concurrency) { if await update(first + i) { o += 1 } else { f += 1 } }
                    return (o, f)
                }
            }
            return await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
        }
        ok += o
        faults += f
        done += batch
        print("soak      \(done) calls after \(fmt(seconds(ContinuousClock.now - start), 0)) s: \(faults) faults so far; RSS \(rssKiB() / 1024) MiB")
    }
    let (bufferOK, bufferFaults) = await buffersTask.value
    let elapsed = seconds(ContinuousClock.now - start)
    if loss > 0 { _ = system("nft delete table inet \(table) 2>/dev/null") }
    let rss1 = rssKiB()
    var applied = 0
    for t in targets {
        let v = try? await a.kernel.call(.get, t + "/counter")
        applied += Int(v?.child("Value")?.text ?? "") ?? 0
    }
    print("soak      \(ok + faults) calls in \(fmt(elapsed, 0)) s: \(ok) replies, \(faults) faults; counters moved \(applied) (one per reply: \(applied == ok ? "yes" : "no, \(applied - ok) more — faults whose update was applied but whose reply was lost"))")
    print("soak      \(buffers) buffers: \(bufferOK) arrived, \(bufferFaults) faults")
    for (reason, n) in reasons.all.sorted(by: { $0.value > $1.value }) { print("soak      \(n) × fault: \(reason)") }
    print("soak      RSS after warm-up \(rss0 / 1024) MiB, at the end \(rss1 / 1024) MiB (\(fmt(Double(rss1) / Double(rss0)))x)")
    for n in [a, b, c] { await n.network?.stop() }
}

/// This process's resident set, in KiB.
func rssKiB() -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(cString: line)
        if s.hasPrefix("VmRSS:") { return Int(s.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0 }
    }
    return 0
}

/// The first few distinct reasons faults gave, counted, so a run with faults says what they were.
final class FaultReasons: Sendable {
    private let counts = Mutex<[String: Int]>([:])
    func count(_ reason: String) { counts.withLock { c in if c[reason] != nil || c.count < 8 { c[reason, default: 0] += 1 } } }
    var all: [String: Int] { counts.withLock { $0 } }
}
