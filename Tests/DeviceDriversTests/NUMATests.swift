@testable import DeviceDrivers
import ServiceKernel
import Testing
import TestKit

@Suite(.bounded) struct NUMATests {
    /// libnuma's own placement, on this machine's first node: every block the pool maps is found there.
    let placement = BufferPool.Placement(prefer: { NUMA.prefer($0, $1, node: $2) }, node: { NUMA.node(of: $0) })

    /// Whether the kernel tells which node a page is on: asked of a page of our own, touched first.
    static let kernelHasNUMA: Bool = {
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.storeBytes(of: 1, as: UInt8.self)
        return NUMA.node(of: page) != nil
    }()

    @Test(.enabled(if: kernelHasNUMA, "the kernel has no NUMA support"))
    func aPoolsPagesAreFoundOnItsNodeAndShownPlaced() throws {
        let pool = BufferPool(limit: 64 << 20, node: 0, placement: placement)
        let buffer = try DataBuffer(count: 3 << 20, pool: pool) { $0.initializeMemory(as: UInt8.self, repeating: 1) }
        #expect(pool.usage.placed == BufferPool.sizeClass(3 << 20) && pool.usage.misplaced == 0)
        #expect(NUMA.node(of: buffer.block!.base) == 0)
    }

    @Test func reservedMemoryIsMappedAtOnceAndServesTheFirstBuffers() throws {
        let pools = BufferPools(nodes: 1, interfaces: ["eth9": 0], limit: 64 << 20, reserve: 8 << 20)
        #expect(pools.usage.first?.mapped == 8 << 20 && pools.usage.first?.free == 8 << 20)
        #expect(pools.usage.first?.interface == ["eth9"])
        let b = try pools.pool(forInterface: "eth9").block(for: 1 << 20)
        #expect(pools.usage.first?.mapped == 8 << 20)  // no new mapping: a reserved block served it
        pools.first.give(b)
    }

    @Test func anInterfacesNodeComesFromSysfsAndVirtualOnesHaveNone() {
        #expect(NUMA.node(ofInterface: "lo") == nil)
        #expect(NUMA.nodes >= 1)
    }
}
