import Infoset
import ServiceKernel

/// The receiving side of the TCP plane: imports (buffers being brought from a peer) and the
/// `DataLink`s they arrive on, one per peer, opened on first use and closed when idle.
extension TCPPlane {
    struct ImportKey: Hashable {
        var peer: String
        var transfer: UInt64
    }

    /// A buffer being brought in, landing in a block of the pool. `@unchecked Sendable`: the
    /// block's bytes and `received` are written only by the reader thread of the link in `link`,
    /// and the block is handed over (as a `DataBuffer`) or given back only once the import has
    /// left the plane's table; `continuation` is set and taken under the plane's lock. Once its
    /// DATA_PULL is out, only that reader fails it (on a bad chunk, or when the link ends), so no
    /// block goes back to the pool while a chunk is still being written into it.
    final class Import: @unchecked Sendable {
        let block: BufferPool.Block
        /// The pool `block` came from, and goes back to if the import fails.
        let pool: BufferPool
        let length: Int
        var received = 0
        /// The link its chunks arrive on, once pulled.
        weak var link: DataLink?
        var continuation: CheckedContinuation<Result<DataBuffer, Fault>, Never>?
        init(block: BufferPool.Block, pool: BufferPool, length: Int) {
            self.block = block
            self.pool = pool
            self.length = length
        }
        /// Where the next `n` bytes land.
        func next(_ n: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: block.base + received, count: n)
        }
    }

    struct OpenDataLink {
        var generation: UInt64
        var task: Task<DataLink?, Never>
        /// The link once open.
        var link: DataLink?
    }

    func fetch(_ offer: Wire.Offer, length: Int, from peer: String) async -> Result<DataBuffer, Fault> {
        var r = ByteReader(offer.descriptor)
        guard let transfer = try? r.u64(), r.isAtEnd else { return .failure(.malformed("a TCP buffer descriptor is a transfer number")) }
        return await fetch(transfer: transfer, length: length, from: peer)
    }

    func fetch(transfer: UInt64, length: Int, from peer: String) async -> Result<DataBuffer, Fault> {
        let lost = Fault.unreachable("it did not arrive")
        // The sender may not be in this node's membership yet (it joined through another node and
        // called at once); its handshake said where it listens.
        guard let address = host?.address(of: peer) else { return .failure(lost) }
        if length == 0 { return .success(DataBuffer([])) }
        // A link retired for idleness between being handed out and being used is replaced, once.
        for _ in 0..<2 {
            guard let link = await dataLink(to: peer, address: address) else { return .failure(lost) }
            let pool = pools.pool(forInterface: link.interface)
            let block: BufferPool.Block
            do { block = try pool.block(for: length) } catch {
                state.withLock { $0.count(peer) { $0.failed += 1 } }
                return .failure(.exhausted(error))
            }
            let key = ImportKey(peer: peer, transfer: transfer)
            let imp = Import(block: block, pool: pool, length: length)
            imp.link = link
            enum Registered { case yes, linkRetired, twice }
            let registered = state.withLock { s -> Registered in
                // Registered under the same lock the retirement takes: a link with an import is not idle.
                guard s.links[peer]?.generation == link.generation else { return .linkRetired }
                // A message that names one transfer twice: a second import would take the first's
                // place here, and the first's block and caller would never be seen again.
                guard s.imports[key] == nil else { return .twice }
                s.imports[key] = imp
                return .yes
            }
            switch registered {
            case .yes: break
            case .linkRetired:
                pool.give(block)
                continue
            case .twice:
                pool.give(block)
                return .failure(.malformed("transfer \(transfer) from \(peer) is already being brought: a message names it twice"))
            }
            link.touch(now)
            return await withCheckedContinuation { c in
                let ended = state.withLock { s -> Bool in
                    guard s.imports[key] === imp else { return true }  // its link ended meanwhile
                    imp.continuation = c
                    return false
                }
                if ended { return c.resume(returning: .failure(lost)) }
                // Written by the link's own thread: this may be an event loop. A pull that cannot
                // be written ends the link, which fails this import with the others on it.
                link.pull(transfer)
            }
        }
        return .failure(lost)
    }

    /// The data link to `peer`, opened if need be; nil if it cannot be had.
    func dataLink(to peer: String, address: String) async -> DataLink? {
        let (generation, opening) = state.withLock { s in
            if let open = s.links[peer] { return (open.generation, open.task) }
            s.linkGeneration += 1
            let generation = s.linkGeneration
            let t = Task { await DataLink.open(to: peer, address: address, generation: generation, plane: self) }
            s.links[peer] = OpenDataLink(generation: generation, task: t)
            return (generation, t)
        }
        let link = await opening.value
        link?.touch(now)  // new links start their idle time now, not at the manager's start
        state.withLock { s in
            guard s.links[peer]?.generation == generation else { return }
            if let link { s.links[peer]!.link = link } else { s.links[peer] = nil }
        }
        return link
    }

    /// The peers this node has a data link open (or opening) to.
    var openLinks: [String] { state.withLock { $0.links.keys.sorted() } }

    /// Closes the data links no buffer has moved on for `dataLinkIdle`: each holds a socket and a
    /// thread, and a node that once pulled from every other would otherwise keep one per peer.
    func retireIdleLinks(now: UInt64) {
        let limit = UInt64(config.dataLinkIdle.nanoseconds / 1_000_000)
        let idle = state.withLock { s -> [DataLink] in
            var retired: [DataLink] = []
            for (peer, open) in s.links {
                guard let link = open.link, now >= link.lastActive + limit,
                      !s.imports.values.contains(where: { $0.link === link }) else { continue }
                s.links[peer] = nil
                retired.append(link)
            }
            return retired
        }
        for link in idle {
            logger.debug("closing the idle data link to \(link.peer)")
            link.close()
        }
    }

    /// A data link's reader has stopped: buffers still arriving on it will not.
    func linkEnded(_ link: DataLink) {
        let lost = state.withLock { s in
            if s.links[link.peer]?.generation == link.generation { s.links[link.peer] = nil }
            return s.imports.filter { $0.value.link === link }.map(\.key)
        }
        for t in lost { failImport(t) }
    }

    /// Closes the data link to `peer` (it died or left, or this node stops).
    func closeLink(to peer: String) {
        guard let open = state.withLock({ $0.links.removeValue(forKey: peer) }) else { return }
        Task { await open.task.value?.close() }
    }

    /// The import a chunk for `transfer` from `peer` lands in, if it is awaited on `link`.
    func awaited(_ key: ImportKey, on link: DataLink) -> Import? {
        state.withLock { s in s.imports[key].flatMap { $0.link === link ? $0 : nil } }
    }

    /// Counts `n` bytes written into `imp` by its link's reader (the only writer); the import is
    /// handed over once every byte is in.
    func landed(_ n: Int, in imp: Import, _ key: ImportKey) {
        imp.received += n
        state.withLock { $0.count(key.peer) { $0.bytesReceived += UInt64(n) } }
        if imp.received == imp.length { finishImport(key) }
    }

    func finishImport(_ key: ImportKey) {
        guard let imp = end(key, counting: \.received) else { return }
        hand(imp, .success(DataBuffer(landed: imp.block, count: imp.length, pool: imp.pool)))
    }

    func failImport(_ key: ImportKey) {
        guard let imp = end(key, counting: \.failed) else { return }
        imp.pool.give(imp.block)
        hand(imp, .failure(.unreachable("it did not arrive")))
    }

    /// Takes an import out of the table and counts how it ended; whoever takes it out owns its
    /// block from then on. Nil if it was already out.
    private func end(_ key: ImportKey, counting outcome: WritableKeyPath<PeerTraffic, Int>) -> Import? {
        state.withLock { s in
            guard let imp = s.imports.removeValue(forKey: key) else { return nil }
            s.count(key.peer) { $0[keyPath: outcome] += 1 }
            return imp
        }
    }

    /// Gives an ended import's caller the buffer or the fault.
    private func hand(_ imp: Import, _ result: Result<DataBuffer, Fault>) {
        imp.link?.touch(now)
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: result)
    }
}
