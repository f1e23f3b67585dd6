import DistributingKernel
import Testing

@Suite struct MembershipTests {
    func cluster(_ n: Int, loss: Double = 0, seed: UInt64 = 1) -> SimulatedCluster {
        var s = SimulatedCluster.Settings()
        s.nodes = n
        s.loss = loss
        s.seed = seed
        var c = SimulatedCluster(s)
        c.joinAll()
        return c
    }

    @Test func nodesJoiningThroughOneSeedConverge() {
        var c = cluster(10)
        let at = c.run(until: 30_000) { $0.converged() }
        #expect(at != nil)
    }

    @Test func aKilledNodeIsDeclaredDeadByEveryoneWithinTheBound() throws {
        var c = cluster(8)
        _ = c.run(until: 30_000) { $0.converged() }
        let killedAt = c.now
        c.kill("n3")
        let gone = try #require(c.run(until: killedAt + 60_000) { $0.everyoneDropped("n3") })
        // Detection by the prober, then gossip to the rest: a few protocol periods past the bound.
        #expect(gone - killedAt <= c.settings.config.detectionBound + 5 * c.settings.config.probeInterval)
        let observers = Set(c.events.filter { $0.member.name == "n3" && $0.member.status == .dead }.map(\.observer))
        #expect(observers.count == 7)
    }

    @Test func suspicionIsRefutedByALiveMember() {
        // With heavy loss, probes fail and live members get suspected; they must refute, not die.
        var c = cluster(6, loss: 0.3, seed: 7)
        c.run(until: 120_000)
        let suspected = c.events.filter { $0.member.status == .suspect }
        let refuted = c.events.filter { $0.member.status == .alive && $0.member.incarnation > 0 }
        #expect(!suspected.isEmpty)
        #expect(!refuted.isEmpty)
    }

    @Test func aLeavingNodeIsDroppedAtOnce() {
        var c = cluster(5)
        _ = c.run(until: 30_000) { $0.converged() }
        let t = c.now
        c.leave("n2")
        let gone = c.run(until: t + 60_000) { $0.everyoneDropped("n2") }
        #expect(gone != nil)
        #expect(c.events.contains { $0.member.name == "n2" && $0.member.status == .left })
        #expect(!c.events.contains { $0.member.name == "n2" && $0.member.status == .dead && $0.at > t })
    }

    @Test func aRestartedNodeRejoinsWithAHigherIncarnation() {
        var c = cluster(5)
        _ = c.run(until: 30_000) { $0.converged() }
        c.kill("n4")
        _ = c.run(until: c.now + 60_000) { $0.everyoneDropped("n4") }
        c.restart("n4")
        let back = c.run(until: c.now + 60_000) { $0.converged() }
        #expect(back != nil)
        #expect((c.nodes["n4"]?.incarnation ?? 0) > 0)
    }

    @Test func theDeadAreForgottenAfterTheRetentionSoTheTableDoesNotGrow() throws {
        var c = cluster(6)
        _ = c.run(until: 30_000) { $0.converged() }
        c.kill("n5")
        let dead = try #require(c.run(until: c.now + 60_000) { $0.everyoneDropped("n5") })
        #expect(c.nodes["n1"]?.members["n5"]?.status == .dead)
        let forgotten = c.run(until: dead + 60_000) { c in c.nodes.keys.filter { $0 != "n5" }.allSatisfy { c.nodes[$0]!.members["n5"] == nil } }
        #expect(forgotten != nil)
        // Not before the retention: a stale "alive" must meet the dead record while it lasts.
        #expect(forgotten! - dead >= c.settings.config.retainGone - c.settings.config.detectionBound)
        #expect(c.converged())
    }

    @Test func aNodeThatLeftAndRestartsIsBackAtOnce() {
        var c = cluster(5)
        _ = c.run(until: 30_000) { $0.converged() }
        c.leave("n3")
        _ = c.run(until: c.now + 10_000) { $0.everyoneDropped("n3") }
        c.restart("n3")
        // Well inside the retention: it refutes "left" with a higher incarnation instead of waiting.
        let back = c.run(until: c.now + 10_000) { $0.converged() }
        #expect(back != nil)
    }

    @Test func simulationIsDeterministic() {
        var a = cluster(12, loss: 0.05, seed: 42)
        var b = cluster(12, loss: 0.05, seed: 42)
        a.run(until: 20_000)
        b.run(until: 20_000)
        #expect(a.messagesSent == b.messagesSent)
        #expect(a.bytesSent == b.bytesSent)
    }
}

@Suite struct NamespaceSpreadTests {
    @Test func aChangeReachesEveryNodeAndAMissedPushIsRepaired() {
        var s = SimulatedCluster.Settings()
        s.nodes = 20
        s.loss = 0.2
        s.seed = 11
        var c = SimulatedCluster(s)
        c.joinAll()
        _ = c.run(until: 60_000) { $0.converged() }
        c.publish("n5")
        // With 20% loss some pushes are lost; anti-entropy must still bring everyone up to date.
        let at = c.run(until: c.now + 60_000) { $0.everyoneHasLatest(of: "n5") }
        #expect(at != nil)
    }
}
