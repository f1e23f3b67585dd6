@testable import ServiceKernel
import Testing

@Suite struct RecycledMemoryTests {
    @Test func aFreedLargeBufferServesTheNextImportOfASimilarSize() {
        let pool = RecycledMemory(limit: 8 << 20)
        pool.give([UInt8](repeating: 1, count: 3 << 20))
        #expect(pool.take(4 << 20) == nil)          // too small for it
        #expect(pool.take(1 << 20) == nil)          // more than twice the size asked: kept for a better fit
        let b = pool.take(2 << 20)
        #expect(b?.count == 2 << 20)
        #expect(pool.take(2 << 20) == nil)          // taken once only
    }

    @Test func smallBuffersAreNotKeptAndTheLimitHolds() {
        let pool = RecycledMemory(limit: 4 << 20)
        pool.give([UInt8](repeating: 0, count: 4096))
        #expect(pool.take(4096) == nil)
        for _ in 0..<3 { pool.give([UInt8](repeating: 0, count: 2 << 20)) }
        #expect(pool.take(2 << 20) != nil)
        #expect(pool.take(2 << 20) != nil)
        #expect(pool.take(2 << 20) == nil)          // the oldest went over the 4 MiB limit
    }

    @Test func writingIntoARecycledBufferNeverChangesOneStillInUse() {
        let pool = RecycledMemory(limit: 8 << 20)
        let held = [UInt8](repeating: 7, count: 2 << 20)
        pool.give(held)                             // a DataBuffer died while its array lives on here
        var reused = pool.take(2 << 20)!
        reused.withUnsafeMutableBytes { $0[0] = 9 }  // copy-on-write: a copy is made
        #expect(held[0] == 7)
        #expect(reused[0] == 9)
    }
}
