import DeviceDrivers
import ServiceKernel
import Synchronization

/// The registration cache: each pool block is registered with the device once, the first time a
/// buffer in it moves, and stays registered for the block's life — registering pins and maps every
/// page, far too slow to do per transfer. A block's registration ends just before the pool unmaps
/// it (`BufferPool.whenUnmapping`), so a region never outlives the memory it names.
final class RDMARegistrations: Sendable {
    let device: RDMADevice
    /// By the block's base address: a block is never unmapped while a buffer in it lives, and its
    /// entry goes before the address can be mapped again.
    private let regions = Mutex<[UInt: MemoryRegion]>([:])

    init(device: RDMADevice, pools: BufferPools) {
        self.device = device
        for pool in pools.pools {
            pool.whenUnmapping { [weak self] block in self?.forget(block) }
        }
    }

    /// The block's region, registered now if it is not yet.
    func region(for block: BufferPool.Block) throws(VerbsError) -> MemoryRegion {
        let key = UInt(bitPattern: block.base)
        if let r = regions.withLock({ $0[key] }) { return r }
        // Registered outside the lock (it takes as long as pinning the block's pages); two
        // first uses at once both register, and the second keeps the first's region.
        let r = try MemoryRegion(device, registering: UnsafeMutableRawBufferPointer(start: block.base, count: block.size))
        return regions.withLock { regions in
            if let first = regions[key] { return first }
            regions[key] = r
            return r
        }
    }

    private func forget(_ block: BufferPool.Block) {
        _ = regions.withLock { $0.removeValue(forKey: UInt(bitPattern: block.base)) }
    }
}
