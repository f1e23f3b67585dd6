@testable import ServiceKernel
import Synchronization
import Testing
import TestKit

@Suite(.bounded) struct BufferPoolTests {
    @Test func aFreedBlockServesTheNextBufferOfItsClassAtTheSameAddress() throws {
        let pool = BufferPool(limit: 64 << 20)
        let first = try pool.block(for: 3 << 20)
        let address = first.base
        pool.give(first)
        let again = try pool.block(for: 3 << 20 - 100)  // the same class
        #expect(again.base == address)
        #expect(pool.usage.mapped == again.size && pool.usage.free == 0)
        pool.give(again)
    }

    @Test func blocksArePageAlignedAndWasteAtMostAFifth() {
        for count in [1, 4095, 4096, 4097, 5 * 4096 + 1, 100_000, 1 << 20, (1 << 20) + 1, 3_000_000, 1 << 30] {
            let size = BufferPool.sizeClass(count)
            #expect(size >= count && size % BufferPool.page == 0)
            #expect(count < 4 * BufferPool.page || Double(size) <= Double(count) * 1.25 + Double(BufferPool.page), "\(count) → \(size)")
        }
    }

    @Test func theLimitHoldsWithAClearErrorAndFreeBlocksMakeRoom() throws {
        let pool = BufferPool(limit: 8 << 20)
        let a = try pool.block(for: 6 << 20)
        #expect(throws: BufferPool.Exhausted.self) { try pool.block(for: 4 << 20) }
        do { _ = try pool.block(for: 4 << 20) } catch {
            #expect(error.description.contains("8388608") && error.description.contains("<Memory buffers="))
        }
        #expect(pool.usage.refused == 2)
        pool.give(a)
        // The free 6 MiB block is unmapped to make room for one of another class.
        let b = try pool.block(for: 4 << 20)
        #expect(pool.usage.mapped == b.size && pool.usage.inUse == b.size)
        pool.give(b)
    }

    @Test func aBufferFilledInPlaceReadsBackAndGivesItsBlockBackWhenItGoes() throws {
        let pool = BufferPool(limit: 16 << 20)
        do {
            let buffer = try DataBuffer(count: 1 << 20, pool: pool) { p in
                for i in 0..<p.count { p[i] = UInt8(truncatingIfNeeded: i * 7) }
            }
            #expect(buffer.count == 1 << 20 && buffer.block != nil)
            #expect(buffer.withUnsafeBytes { p in (0..<p.count).allSatisfy { p[$0] == UInt8(truncatingIfNeeded: $0 * 7) } })
            #expect(pool.usage.buffers == 1)
        }
        #expect(pool.usage.buffers == 0 && pool.usage.inUse == 0)
        #expect(pool.usage.free == BufferPool.sizeClass(1 << 20))  // kept for the next one
    }

    @Test func freeBlocksBeyondWhatIsKeptAreUnmapped() throws {
        let pool = BufferPool(limit: 64 << 20, keepFree: 4 << 20)
        let blocks = try (0..<4).map { _ in try pool.block(for: 2 << 20) }
        for b in blocks { pool.give(b) }
        #expect(pool.usage.free <= 4 << 20)
        #expect(pool.usage.mapped == pool.usage.free)
    }

    @Test func whoeverRegisteredABlockHearsOfItBeforeItIsUnmapped() throws {
        // An RDMA device's registration of a block must end while the block's pages are there.
        let pool = BufferPool(limit: 64 << 20, keepFree: 0)
        let told = Mutex<[UInt]>([])
        pool.whenUnmapping { b in
            // Still mapped: its first byte can be written (after an unmap this would fault).
            b.base.storeBytes(of: 1, as: UInt8.self)
            told.withLock { $0.append(UInt(bitPattern: b.base)) }
        }
        let block = try pool.block(for: 1 << 20)
        let base = UInt(bitPattern: block.base)
        #expect(told.withLock { $0.isEmpty })  // in use: nobody is told
        pool.give(block)                         // nothing kept free: unmapped now
        #expect(told.withLock { $0 } == [base])
    }
}
