@testable import DistributingKernel
import Testing
import TestKit

@Suite(.bounded) struct CorrelationTableTests {
    @Test func valuesAreFoundByNumberThroughCollisionsGrowthAndOverflow() {
        var t = CorrelationTable<String>()
        // One call that never ends while 5,000 later ones come and go: its slot is taken again
        // and again, so later numbers collide with it, the slots grow to their limit, and then
        // the colliding ones go to the dictionary.
        t[1] = "slow"
        for id in UInt64(2)...5000 {
            t[id] = "call \(id)"
            #expect(t[id] == "call \(id)")
            if id % 3 != 0 { #expect(t.removeValue(forKey: id) == "call \(id)") }
        }
        #expect(t[1] == "slow")
        #expect(t.count == 1 + 4999 / 3)
        // Changing a value (a deadline re-armed) keeps one entry, wherever it lives.
        for id in stride(from: UInt64(3), through: 5000, by: 3) { t[id] = "again \(id)" }
        #expect(t.count == 1 + 4999 / 3)
        #expect(Set(t.ids { $0.hasPrefix("again") }) == Set(stride(from: UInt64(3), through: 5000, by: 3)))
        // Removing is exactly once: a second removal finds nothing.
        for id in t.ids(where: { _ in true }) {
            #expect(t.removeValue(forKey: id) != nil)
            #expect(t.removeValue(forKey: id) == nil)
            #expect(t[id] == nil)
        }
        #expect(t.count == 0)
    }
}
