@testable import DistributingKernel
import Testing
import TestKit

/// `n` simulated nodes, every one joining through node 0 at time 0.
func joiningCluster(_ n: Int, loss: Double = 0, seed: UInt64) -> SimulatedCluster {
    var s = SimulatedCluster.Settings()
    s.nodes = n
    s.loss = loss
    s.seed = seed
    var c = SimulatedCluster(s)
    c.joinAll()
    return c
}

@Suite(.bounded, .computeThread) struct MembershipTests {
    func cluster(_ n: Int, loss: Double = 0, seed: UInt64 = 1) -> SimulatedCluster { joiningCluster(n, loss: loss, seed: seed) }

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

    @Test func anAckReplayedFromAPreviousLifeDoesNotKeepADeadMemberAlive() {
        // A host on the path records b's ack to a's probe. b then dies and a restarts (a new
        // process: a new random seed). The recorded ack, replayed when a's new life probes b,
        // must not count as b's answer: probe numbers do not start over with each process.
        func probe(_ a: inout Membership, at now: UInt64) -> Membership.Message? {
            a.tick(now: now).lazy.compactMap { if case .send(to: "b", _, let m) = $0, case .ping = m { m } else { nil } }.first
        }
        let b = Membership.Member(name: "b", address: "b:1", incarnation: 0, status: .alive)
        var first = Membership(name: "a", address: "a:1", seed: 11)
        _ = first.receive(.gossip(members: [b]), from: "b", address: "b:1", now: 0)
        var theB = Membership(name: "b", address: "b:1", seed: 12)
        guard case .ping(let seq, let g)? = probe(&first, at: 1000),
              let recorded = theB.receive(.ping(seq: seq, gossip: g), from: "a", address: "a:1", now: 1000).lazy
                .compactMap({ if case .send(to: "a", _, let m) = $0, case .ack = m { m } else { nil } }).first else { Issue.record("no ping and ack"); return }

        var second = Membership(name: "a", address: "a:1", seed: 13)
        _ = second.receive(.gossip(members: [b]), from: "b", address: "b:1", now: 0)
        guard case .ping? = probe(&second, at: 1000) else { Issue.record("no probe of b"); return }
        _ = second.receive(recorded, from: "b", address: "b:1", now: 1010)
        let later = second.tick(now: 1000 + second.config.probeTimeout) + second.tick(now: 2000)
        #expect(later.contains { if case .changed(let m) = $0 { m.name == "b" && m.status == .suspect } else { false } },
                "b, silent, is suspected despite the replayed ack")
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

    @Test func aFalselyDeclaredDeadNodeThatHearsButIsNotHeardComesBack() throws {
        // n2's own messages are lost for a while (its outgoing link is bad); it still hears the
        // others, so it never suspects anyone, and after the news of its death has been gossiped
        // out nothing tells it — unless someone answers its probes with what it is believed to be.
        var c = cluster(3, seed: 3)
        _ = c.run(until: 30_000) { $0.allAlive() }
        c.mute = ["n2"]
        _ = try #require(c.run(until: c.now + 60_000) { $0.everyoneDropped("n2") })
        c.run(until: c.now + 20_000)  // long past the gossip of its death
        c.mute = []
        let healedAt = c.now
        let back = try #require(c.run(until: healedAt + 60_000) { $0.allAlive() })
        #expect(back - healedAt <= 2 * c.settings.config.probeInterval + c.settings.config.reconnectInterval)
    }

    @Test func aHealedPartitionMergesAgainEvenAfterTheDeadAreForgotten() throws {
        // Both sides have live members, so neither knocks on a seed; n0 has no seed at all. Only
        // reconnecting to the dead brings them together — here after the 30 s retention, when each
        // side has forgotten the other's members.
        var c = cluster(5, seed: 5)
        _ = c.run(until: 30_000) { $0.allAlive() }
        c.partition([["n0", "n1"], ["n2", "n3", "n4"]])
        func split(_ c: SimulatedCluster) -> Bool {
            ["n0", "n1"].allSatisfy { a in ["n2", "n3", "n4"].allSatisfy { b in
                c.nodes[a]!.members[b]?.status ?? .dead >= .dead && c.nodes[b]!.members[a]?.status ?? .dead >= .dead } }
        }
        _ = try #require(c.run(until: c.now + 60_000) { split($0) })
        c.run(until: c.now + c.settings.config.retainGone + 10_000)
        #expect(c.nodes["n0"]!.members["n3"] == nil)
        c.heal()
        let healedAt = c.now
        let back = try #require(c.run(until: healedAt + 60_000) { $0.allAlive() })
        // One reconnect interval to send, then gossip rounds to spread both sides' refutations.
        #expect(back - healedAt <= 2 * c.settings.config.reconnectInterval + 3 * c.settings.config.probeInterval)
    }

    @Test func aNodeBackFromAPartitionDoesNotKillMembersThatNeverLostEachOther() throws {
        // n2 is cut off and, alone, concludes n0 and n1 are dead. Back, it tells them so. n0 and
        // n1 have heard each other all along: a death they each have fresh evidence against is a
        // suspicion to refute, never a death (which would drop a live member's services and calls).
        for seed: UInt64 in [3, 5, 8] {
            var c = cluster(3, seed: seed)
            _ = try #require(c.run(until: 30_000) { $0.allAlive() })
            c.partition([["n0", "n1"], ["n2"]])
            _ = try #require(c.run(until: c.now + 60_000) { c in
                ["n0", "n1"].allSatisfy { c.nodes["n2"]!.members[$0]?.status == .dead } })
            c.heal()
            let healedAt = c.now
            _ = try #require(c.run(until: healedAt + 60_000) { $0.allAlive() })
            let deaths = c.events.filter { $0.at >= healedAt && $0.member.status == .dead && $0.observer != "n2" && $0.member.name != "n2" }
            #expect(deaths.isEmpty, "seed \(seed): \(deaths.map { "\($0.observer) declared \($0.member.name) dead" })")
        }
    }

    @Test func aNodeWithABadLinkOfItsOwnSuspectsOthersLessWithLocalHealth() {
        // n0 loses 60% of what it receives: its probes fail and it would suspect healthy members.
        // Lifeguard's health score slows its probing, so it suspects others less readily. Summed
        // over four replayable runs: one run's figures depend on where the losses happen to fall.
        func suspicionsByTheBadNode(healthLimit: Int) -> (suspected: Int, died: Int) {
            var total = (suspected: 0, died: 0)
            for seed in UInt64(1)...4 {
                var s = SimulatedCluster.Settings()
                s.nodes = 6
                s.seed = seed
                s.config.healthLimit = healthLimit
                var c = SimulatedCluster(s)
                c.joinAll()
                _ = c.run(until: 30_000) { $0.allAlive() }
                let t = c.now
                c.inboundLoss["n0"] = 0.6
                c.run(until: t + 180_000)
                let after = c.events.filter { $0.at > t }
                total.suspected += after.filter { $0.observer == "n0" && $0.member.status == .suspect }.count
                total.died += after.filter { $0.member.status == .dead }.count
            }
            return total
        }
        let plain = suspicionsByTheBadNode(healthLimit: 0), lifeguard = suspicionsByTheBadNode(healthLimit: 8)
        #expect(lifeguard.suspected * 3 <= plain.suspected, "suspicions raised by the node with the bad link: \(lifeguard.suspected) with local health, \(plain.suspected) without")
        #expect(lifeguard.died < plain.died, "false deaths: \(lifeguard.died) with local health, \(plain.died) without")
    }

    @Test func suspicionShortensAsOthersConfirmIt() {
        #expect(suspicionTimeout(confirmations: 0, expected: 2, min: 4000, max: 12_000) == 12_000)
        let one = suspicionTimeout(confirmations: 1, expected: 2, min: 4000, max: 12_000)
        #expect(one > 4000 && one < 12_000)
        #expect(suspicionTimeout(confirmations: 2, expected: 2, min: 4000, max: 12_000) == 4000)
        #expect(suspicionTimeout(confirmations: 0, expected: 0, min: 4000, max: 12_000) == 4000)
    }

    @Test func anIncarnationNearTheTopIsRefusedNotOverflowed() {
        var m = Membership(name: "a", address: "a:1", seed: 1)
        let hostile = Membership.Member(name: "a", address: "a:1", incarnation: .max, status: .dead)
        let other = Membership.Member(name: "b", address: "b:1", incarnation: .max, status: .alive)
        _ = m.receive(.gossip(members: [hostile, other]), from: "b", address: "b:1", now: 1)
        #expect(m.incarnation == 0)
        #expect(m.members["b"] == nil)
        let fine = Membership.Member(name: "a", address: "a:1", incarnation: 7, status: .suspect)
        _ = m.receive(.gossip(members: [fine]), from: "b", address: "b:1", now: 2)
        #expect(m.incarnation == 8)
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

@Suite(.bounded, .computeThread) struct NamespaceSpreadTests {
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

/// The real namespace replica, driven by the simulator as the network manager drives it.
@Suite(.bounded, .computeThread) struct SimulatedNamespaceTests {
    /// Joined, and run until every node lists every other.
    func cluster(_ n: Int, loss: Double = 0, seed: UInt64 = 3) -> SimulatedCluster {
        var c = joiningCluster(n, loss: loss, seed: seed)
        _ = c.run(until: 60_000) { $0.converged() }
        return c
    }

    @Test func everyNodeListsEveryOthersServicesOnceConverged() throws {
        var c = cluster(12)
        let at = c.run(until: c.now + 30_000) { c in (0..<12).allSatisfy { c.everyoneHasLatest(of: SimulatedCluster.name($0)) } }
        #expect(at != nil)
        #expect(c.replicas["n3"]!.remoteEntries.count == 11)
    }

    @Test func aDeadNodesServicesLeaveEveryDirectoryAndARestartedNodesComeBack() throws {
        var c = cluster(8)
        _ = c.run(until: c.now + 30_000) { $0.everyoneHasLatest(of: "n4") }
        c.kill("n4")
        let gone = c.run(until: c.now + 60_000) { c in
            c.replicas.filter { $0.key != "n4" }.allSatisfy { $0.value.version(of: "n4") == 0 }
        }
        #expect(gone != nil)
        c.restart("n4")
        c.publish("n4")
        #expect(c.run(until: c.now + 60_000) { $0.everyoneHasLatest(of: "n4") } != nil)
    }

    @Test func withoutPushesAntiEntropyAloneSpreadsAChangeInAClusterOfMoreThanEight() {
        // Every push is lost to the nodes that matter: only the summary exchange can repair them.
        var c = cluster(12)
        c.mute.insert("n5")
        c.publish("n5")
        c.mute.remove("n5")
        #expect(!c.everyoneHasLatest(of: "n5"))
        #expect(c.run(until: c.now + 60_000) { $0.everyoneHasLatest(of: "n5") } != nil)
        #expect(c.malformed == 0, "messages the receiver could not read (a summary of twelve tables was, until 2026-12-07)")
    }
}
