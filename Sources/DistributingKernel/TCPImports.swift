import ServiceKernel

/// The receiving side of the TCP plane: imports (buffers being brought from a peer) and the
/// `DataLink`s they arrive on, one per peer, opened on first use and closed when idle.
extension TCPPlane {
    struct ImportKey: Hashable {
        var peer: String
        var transfer: UInt64
    }

    /// A buffer being brought in. `@unchecked Sendable`: `bytes` and `received` are written only by
    /// the reader thread of the link in `link`, and read by others only once the import has left
    /// the plane's table (finished or failed); `continuation` is set and taken under the plane's lock.
    final class Import: @unchecked Sendable {
        var bytes: [UInt8]
        var received = 0
        /// The link its chunks arrive on, once pulled.
        weak var link: DataLink?
        var continuation: CheckedContinuation<DataBuffer?, Never>?
        init(length: Int) {
            bytes = RecycledMemory.shared.landing(length)
        }
    }

    struct OpenDataLink {
        var generation: UInt64
        var task: Task<DataLink?, Never>
        /// The link once open.
        var link: DataLink?
    }

    func fetch(transfer: UInt64, length: Int, from peer: String) async -> DataBuffer? {
        // The sender may not be in this node's membership yet (it joined through another node and
        // called at once); its handshake said where it listens.
        guard let address = manager?.address(of: peer) else { return nil }
        // A link retired for idleness between being handed out and being used is replaced, once.
        for _ in 0..<2 {
            guard let link = await dataLink(to: peer, address: address) else { return nil }
            let key = ImportKey(peer: peer, transfer: transfer)
            let imp = Import(length: length)
            imp.link = link
            let current = state.withLock { s -> Bool in
                // Registered under the same lock the retirement takes: a link with an import is not idle.
                guard s.links[peer]?.generation == link.generation else { return false }
                s.imports[key] = imp
                return true
            }
            guard current else { continue }
            link.touch(now)
            return await withCheckedContinuation { c in
                let ended = state.withLock { s -> Bool in
                    guard s.imports[key] === imp else { return true }  // its link ended meanwhile
                    imp.continuation = c
                    return false
                }
                if ended { return c.resume(returning: nil) }
                if length == 0 { finishImport(key) } else if !link.pull(transfer) { failImport(key) }
            }
        }
        return nil
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
        if imp.received == imp.bytes.count { finishImport(key) }
    }

    func finishImport(_ key: ImportKey) {
        end(key) { traffic, imp in
            traffic.received += 1
            return DataBuffer(imp.bytes)
        }
    }

    func failImport(_ key: ImportKey) {
        end(key) { traffic, _ in
            traffic.failed += 1
            return nil
        }
    }

    /// Takes an import out of the table, counts how it ended, and hands its caller the buffer or nil.
    private func end(_ key: ImportKey, _ outcome: (inout PeerTraffic, Import) -> DataBuffer?) {
        let ended = state.withLock { s -> (Import, DataBuffer?)? in
            guard let imp = s.imports.removeValue(forKey: key) else { return nil }
            var result: DataBuffer?
            s.count(key.peer) { result = outcome(&$0, imp) }
            return (imp, result)
        }
        guard let (imp, result) = ended else { return }
        imp.link?.touch(now)
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: result)
    }
}
