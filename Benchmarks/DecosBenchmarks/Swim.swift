import DistributingKernel

/// Membership and namespace spread for a large cluster, in the deterministic simulator:
/// `decos-bench swim [NODES] [LOSS]` (defaults 1000 and 0.05).
func swimBenchmark(nodes: Int, loss: Double) {
    var s = SimulatedCluster.Settings()
    s.nodes = nodes
    s.loss = loss
    s.minDelay = 1
    s.maxDelay = 20
    s.seed = 2026
    var c = SimulatedCluster(s)
    let probe = Double(s.config.probeInterval)
    print("swim      \(nodes) nodes, \(Int(loss * 100))% loss, 1-20 ms delay, probe \(s.config.probeInterval) ms, suspicion \(s.config.suspicionTimeout) ms")

    let start = ContinuousClock.now
    c.joinAll()
    var converged: UInt64?
    while converged == nil && c.now < 600_000 {
        c.run(until: c.now + 1000)
        if c.converged() { converged = c.now }
    }
    guard let joined = converged else { print("swim      did not converge in 600 s"); return }
    print("join      all \(nodes) list each other as members after \(fmt(Double(joined) / 1000, 1)) s (\(Int(Double(joined) / probe)) protocol periods), all joining through one seed")

    // Steady state: traffic and false positives over one simulated minute.
    let before = c.bytesSent.values.reduce(0, +), eventsBefore = c.events.count, t0 = c.now
    c.run(until: t0 + 60_000)
    let bytes = c.bytesSent.values.reduce(0, +) - before
    let steady = c.events[eventsBefore...]
    let falseDead = steady.filter { $0.member.status == .dead }
    let falseSuspect = Set(steady.filter { $0.member.status == .suspect }.map { "\($0.member.name)@\($0.member.incarnation)" })
    let victims = Set(falseDead.map(\.member.name))
    print("traffic   \(fmt(Double(bytes) / Double(nodes) / 60, 0)) bytes per node per second (membership and namespace digests together)")
    print("false +   \(falseSuspect.count) suspicions (refuted) and \(falseDead.count) false death declarations about \(victims.count) live nodes in 60 s: \(fmt(Double(victims.count) / Double(nodes) * 100, 2))% of nodes falsely declared dead")

    // Namespace spread: one node registers a service.
    c.publish("n7")
    let t1 = c.now
    let spread = c.run(until: t1 + 120_000) { $0.everyoneHasLatest(of: "n7") }
    print("namespace a new service on one node is in every directory after \(spread.map { fmt(Double($0 - t1) / 1000, 2) + " s" } ?? "more than 120 s") (push, then anti-entropy repairs lost pushes)")

    // Failure detection: one node dies.
    c.kill("n42")
    let t2 = c.now
    let gone = c.run(until: t2 + 120_000) { $0.everyoneDropped("n42") }
    print("failure   a killed node is dropped by all \(nodes - 1) others after \(gone.map { fmt(Double($0 - t2) / 1000, 1) + " s" } ?? "more than 120 s") (bound for the prober: \(fmt(Double(s.config.detectionBound) / 1000, 1)) s)")
    print("simulated \(fmt(Double(c.now) / 1000, 0)) s of cluster time in \(fmt(seconds(ContinuousClock.now - start), 1)) s")
}
