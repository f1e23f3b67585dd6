#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Where buffers live: page-aligned blocks the data planes can use as they are (an RDMA device
/// registers a block once and keeps the registration for the block's life; AF_XDP can take one
/// as its UMEM), bounded by a limit the manifest sets.
///
/// Blocks come in size classes four to a doubling (4 KiB · 2^k · 1, 1.25, 1.5, 1.75), so a buffer
/// wastes at most a fifth of its block. A freed block goes on its class's free list and serves the
/// next buffer of that class without a page fault: landing bytes in fresh memory costs a fault and
/// a zeroed page per 4 KiB, most of what a transfer costs once the network is fast. Free blocks are
/// unmapped, largest first, when a new block would pass the limit or more than `keepFree` bytes
/// of them are kept.
public final class BufferPool: Sendable {
    /// The limit unless the manifest sets one (`<Memory buffers="…"/>`).
    public static let defaultLimit = 4 << 30
    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// A block of pool memory: `size` bytes at `base`, mapped for the block's whole life.
    /// `@unchecked Sendable`: `base` and `size` never change; the bytes behind `base` are written
    /// only by whoever fills the buffer it backs, before the buffer is shared (see `DataBuffer`).
    public final class Block: @unchecked Sendable {
        public let base: UnsafeMutableRawPointer
        public let size: Int
        /// The NUMA node its pages were placed on.
        public let node: Int
        /// Whether its pages were found on that node when it was mapped (nil without NUMA).
        let placed: Bool?
        fileprivate init(base: UnsafeMutableRawPointer, size: Int, node: Int, placed: Bool?) {
            self.base = base
            self.size = size
            self.node = node
            self.placed = placed
        }
    }

    /// Why a buffer could not be had.
    public struct Exhausted: Error, CustomStringConvertible {
        public var asked: Int
        public var inUse: Int
        public var limit: Int
        public var description: String {
            "the buffer pool cannot hold \(asked) bytes more: \(inUse) of its \(limit) bytes are in use (<Memory buffers=\"…\"/> in the manifest sets the limit)"
        }
    }

    /// Putting a block's pages on a NUMA node, and checking where they are (libnuma, from the
    /// device-driver kernel): nil where the machine has one node.
    public struct Placement: Sendable {
        /// Asks that untouched pages come from a node.
        public var prefer: @Sendable (UnsafeMutableRawPointer, Int, Int) -> Void
        /// The node a present page is on.
        public var node: @Sendable (UnsafeMutableRawPointer) -> Int?
        public init(prefer: @escaping @Sendable (UnsafeMutableRawPointer, Int, Int) -> Void,
                    node: @escaping @Sendable (UnsafeMutableRawPointer) -> Int?) {
            self.prefer = prefer
            self.node = node
        }
    }

    /// What `/os/memory` shows of a pool.
    public struct Usage: Codable, Sendable, Equatable {
        public var node: Int
        /// The network interfaces whose buffers land here (those on this NUMA node).
        public var interface: [String] = []
        public var limit: Int
        /// Bytes mapped: blocks in use and blocks free for reuse.
        public var mapped: Int
        /// Bytes in blocks that back live buffers.
        public var inUse: Int
        public var buffers: Int
        /// Bytes in free blocks, kept for reuse.
        public var free: Int
        /// Requests refused because the limit was reached.
        public var refused: Int
        /// Where pages are placed on a NUMA node: bytes of blocks whose pages were found on this
        /// node, and blocks some of whose pages were not (the node had no memory left).
        public var placed: Int
        public var misplaced: Int
    }

    private struct State {
        var limit: Int
        var keepFree: Int
        var mapped = 0
        var inUse = 0
        var buffers = 0
        var refused = 0
        /// Free blocks by size class (their bytes are `mapped - inUse`).
        var free: [Int: [Block]] = [:]
        var placed = 0
        var misplaced = 0
    }

    private let state: Mutex<State>
    /// Told of each block just before it is unmapped: an RDMA device deregisters it then.
    private let unmapping = Mutex<[@Sendable (Block) -> Void]>([])
    /// The NUMA node this pool places its pages on.
    public let node: Int
    private let placement: Placement?

    public init(limit: Int = BufferPool.defaultLimit, keepFree: Int = 512 << 20, node: Int = 0, placement: Placement? = nil) {
        state = Mutex(State(limit: limit, keepFree: max(keepFree, 0)))
        self.node = node
        self.placement = placement
    }

    /// Maps `bytes` now, as free blocks of `block` bytes each, so the first buffers pay no page
    /// faults (and, on a NUMA machine, their placement shows in `/os/memory` from the start).
    /// What does not fit under the limit is not reserved.
    public func reserve(_ bytes: Int, block: Int = 1 << 20) {
        var blocks: [Block] = []
        var reserved = 0
        while reserved + block <= bytes, let b = try? self.block(for: block) {
            blocks.append(b)
            reserved += b.size
        }
        state.withLock { $0.keepFree = max($0.keepFree, reserved) }
        blocks.forEach(give)
    }

    /// Sets the most bytes the pool maps (blocks in use and free); free blocks over it are unmapped.
    public func setLimit(_ limit: Int) {
        let unmapped = state.withLock { s -> [Block] in
            s.limit = limit
            return Self.trim(&s, toFit: 0)
        }
        unmapped.forEach(unmap)
    }

    public var usage: Usage {
        state.withLock { s in
            Usage(node: node, limit: s.limit, mapped: s.mapped, inUse: s.inUse, buffers: s.buffers,
                  free: s.mapped - s.inUse, refused: s.refused, placed: s.placed, misplaced: s.misplaced)
        }
    }

    /// The size of the block a buffer of `count` bytes takes.
    public static func sizeClass(_ count: Int) -> Int {
        let pages = max(1, (count + page - 1) / page)
        if pages <= 4 { return pages * page }
        // Four classes per doubling: the top three bits of the page count, rounded up.
        let shift = (Int.bitWidth - 1 - pages.leadingZeroBitCount) - 2
        let rounded = ((pages + (1 << shift) - 1) >> shift) << shift
        return rounded * page
    }

    /// A block for `count` bytes, its contents undefined: a free one of its class, else a new
    /// mapping with its pages made present in one call. Throws when the limit would be passed.
    public func block(for count: Int) throws(Exhausted) -> Block {
        let size = Self.sizeClass(count)
        enum Step { case reuse(Block), map([Block]), refuse(Exhausted) }
        let step = state.withLock { s -> Step in
            if let b = s.free[size]?.popLast() {
                s.inUse += size
                s.buffers += 1
                return .reuse(b)
            }
            guard s.inUse + size <= s.limit else {
                s.refused += 1
                return .refuse(Exhausted(asked: count, inUse: s.inUse, limit: s.limit))
            }
            // Room is made by unmapping free blocks of other classes, and the new block counted now.
            let unmapped = Self.trim(&s, toFit: size)
            s.mapped += size
            s.inUse += size
            s.buffers += 1
            return .map(unmapped)
        }
        switch step {
        case .reuse(let b): return b
        case .refuse(let e): throw e
        case .map(let unmapped):
            unmapped.forEach(unmap)
            guard let b = map(size) else {
                throw state.withLock { s in
                    s.mapped -= size
                    s.inUse -= size
                    s.buffers -= 1
                    s.refused += 1
                    return Exhausted(asked: count, inUse: s.inUse, limit: s.limit)
                }
            }
            if let placed = b.placed { state.withLock { s in if placed { s.placed += size } else { s.misplaced += 1 } } }
            return b
        }
    }

    /// Gives a block back: it serves the next buffer of its class.
    public func give(_ b: Block) {
        let unmapped = state.withLock { s -> [Block] in
            s.inUse -= b.size
            s.buffers -= 1
            s.free[b.size, default: []].append(b)
            return Self.trim(&s, toFit: 0)
        }
        unmapped.forEach(unmap)
    }

    /// Takes free blocks out, largest first, until `extra` more bytes fit under the limit and no
    /// more than `keepFree` bytes are free.
    private static func trim(_ s: inout State, toFit extra: Int) -> [Block] {
        var out: [Block] = []
        while s.mapped + extra > s.limit || s.mapped - s.inUse > s.keepFree, let size = s.free.keys.filter({ !s.free[$0]!.isEmpty }).max() {
            let b = s.free[size]!.removeLast()
            s.mapped -= b.size
            switch b.placed {
            case true?: s.placed -= b.size
            case false?: s.misplaced -= 1
            case nil: break
            }
            out.append(b)
        }
        return out
    }

    /// Maps a block, its pages placed on the pool's node where there is NUMA and made present in
    /// one call (every byte is about to be written; before Linux 5.14 this fails and they fault in
    /// as written). With NUMA, also whether the pages were found on the node (first, middle, last).
    private func map(_ size: Int) -> Block? {
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return nil }
        placement?.prefer(p, size, node)
        _ = madvise(p, size, 23 /* MADV_POPULATE_WRITE */)
        let placed = placement.map { placement in
            [0, size / 2, size - 1].allSatisfy { offset in
                let page = p + offset / Self.page * Self.page
                page.storeBytes(of: 0, as: UInt8.self)  // present even where MADV_POPULATE_WRITE is unknown
                return placement.node(page) == node
            }
        }
        return Block(base: p, size: size, node: node, placed: placed)
    }

    /// Calls `observer` with each block just before it is unmapped (registrations made over a
    /// block must end while its pages are still there).
    public func whenUnmapping(_ observer: @escaping @Sendable (Block) -> Void) {
        unmapping.withLock { $0.append(observer) }
    }

    private func unmap(_ b: Block) {
        for observer in unmapping.withLock({ $0 }) { observer(b) }
        munmap(b.base, b.size)
    }
}
