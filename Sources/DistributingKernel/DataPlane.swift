import Infoset
import NIOCore
import ServiceKernel

/// How the bytes of buffers referenced by messages move between nodes: the control part of a
/// message carries only (id, length, transfer), and a data plane moves the bytes into memory the
/// receiver owns before the service sees the message. The TCP data connection below is the one
/// implementation today; RDMA READ (verbs) and AF_XDP frames implement this same protocol next.
public protocol DataPlane: Sendable {
    /// Offers `buffer` to `peer` alone for the call `call`; the transfer number goes in the message.
    func export(_ buffer: DataBuffer, call: UInt64, to peer: String) -> UInt64
    /// Withdraws offers once their call has ended.
    func release(_ transfers: [UInt64])
    /// Brings one offered buffer from `peer` into this node's memory; nil if it cannot be had.
    func fetch(transfer: UInt64, length: Int, from peer: String) async -> DataBuffer?
}

/// The TCP data plane: buffers move on their own connection, pulled by the receiver in chunks, so
/// a large buffer never stalls the control connection. The sender's end is a data connection on
/// its event loop (below); the receiver's end is a `DataLink`, which lands the bytes in place.
extension NetworkManager: DataPlane {
    public func export(_ buffer: DataBuffer, call: UInt64, to peer: String) -> UInt64 {
        offer(buffer, call: call, to: peer, expires: nil)
    }

    private func offer(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) -> UInt64 {
        state.withLock { s in
            defer { s.nextTransfer += 1 }
            s.exports[s.nextTransfer] = Export(buffer: buffer, call: call, peer: peer, expires: expires)
            return s.nextTransfer
        }
    }

    /// Offers a notification's buffers to `peer` until the request timeout has passed: no call's
    /// end withdraws them, and a subscriber that never pulls must not keep them forever.
    func exportForNotification(_ buffers: [BufferRef], to peer: String) -> [UInt64] {
        let expires = now + timeoutMillis
        return buffers.map { offer($0.buffer, call: 0, to: peer, expires: expires) }
    }

    /// Withdraws the notifications' exports whose time is up.
    func expireExports(now: UInt64) {
        state.withLock { s in
            for (t, e) in s.exports where e.expires.map({ $0 <= now }) ?? false { s.exports[t] = nil }
        }
    }

    public func release(_ transfers: [UInt64]) {
        state.withLock { s in for t in transfers { s.exports[t] = nil } }
    }

    public func fetch(transfer: UInt64, length: Int, from peer: String) async -> DataBuffer? {
        // The sender may not be in this node's membership yet (it joined through another node and
        // called at once); its handshake said where it listens.
        guard let address = state.withLock({ $0.membership.members[peer]?.address ?? $0.helloAddresses[peer] }) else { return nil }
        // A link retired for idleness between being handed out and being used is replaced, once.
        for _ in 0..<2 {
            guard let link = await dataLink(to: peer, address: address) else { return nil }
            let key = ImportKey(peer: peer, transfer: transfer)
            let imp = Import(length: length)
            imp.link = link
            let current = state.withLock { s -> Bool in
                // Registered under the same lock the retirement takes: a link with an import is not idle.
                guard s.dataLinks[peer]?.generation == link.generation else { return false }
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
            if let open = s.dataLinks[peer] { return (open.generation, open.task) }
            s.linkGeneration += 1
            let generation = s.linkGeneration
            let t = Task { await DataLink.open(to: peer, address: address, generation: generation, manager: self) }
            s.dataLinks[peer] = OpenDataLink(generation: generation, task: t)
            return (generation, t)
        }
        let link = await opening.value
        link?.touch(now)  // new links start their idle time now, not at the manager's start
        state.withLock { s in
            guard s.dataLinks[peer]?.generation == generation else { return }
            if let link { s.dataLinks[peer]!.link = link } else { s.dataLinks[peer] = nil }
        }
        return link
    }

    /// The peers this node has a data link open (or opening) to.
    public var openDataLinks: [String] { state.withLock { $0.dataLinks.keys.sorted() } }

    /// Closes the data links no buffer has moved on for `dataLinkIdle`: each holds a socket and a
    /// thread, and a node that once pulled from every other would otherwise keep one per peer.
    func retireIdleDataLinks(now: UInt64) {
        let limit = UInt64(config.dataLinkIdle.nanoseconds / 1_000_000)
        let idle = state.withLock { s -> [DataLink] in
            var retired: [DataLink] = []
            for (peer, open) in s.dataLinks {
                guard let link = open.link, now >= link.lastActive + limit,
                      !s.imports.values.contains(where: { $0.link === link }) else { continue }
                s.dataLinks[peer] = nil
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
    func dataLinkEnded(_ link: DataLink) {
        let lost = state.withLock { s in
            if s.dataLinks[link.peer]?.generation == link.generation { s.dataLinks[link.peer] = nil }
            return s.imports.filter { $0.value.link === link }.map(\.key)
        }
        for t in lost { failImport(t) }
    }

    /// Closes the data link to `peer` (it died or left, or this node stops).
    func closeDataLink(to peer: String) {
        guard let open = state.withLock({ $0.dataLinks.removeValue(forKey: peer) }) else { return }
        Task { await open.task.value?.close() }
    }

    /// Pulls each referenced buffer from the sending node; a fault if any cannot be had.
    func fetchBuffers(_ incoming: Wire.Incoming, from peer: String, into m: inout Message) async -> Fault? {
        var refs: [BufferRef] = []
        for b in incoming.buffers {
            guard let buffer = await dataPlane.fetch(transfer: b.transfer, length: b.length, from: peer) else {
                return .unreachable("buffer \(b.id) from \(peer) did not arrive")
            }
            refs.append(BufferRef(id: b.id, buffer: buffer))
        }
        m.buffers = refs
        return nil
    }

    /// Streams an exported buffer in chunks, eight in flight at a time so memory stays bounded.
    func handleDataPull(_ payload: [UInt8], from peer: String, on channel: any Channel) {
        var r = ByteReader(payload)
        guard let transfer = try? r.u64() else { return }
        // Only the peer the buffer was sent to may pull it: to any other, it does not exist.
        guard let export = state.withLock({ s in s.exports[transfer].flatMap { $0.peer == peer ? $0 : nil } }) else {
            var w = ByteWriter()
            w.u64(transfer)
            w.u64(UInt64.max)  // "no such transfer", with no data: the puller faults the request
            channel.send(Wire.Frame(.dataChunk, w.bytes))
            return
        }
        Task {
            var offset = 0
            var inFlight: [EventLoopFuture<Void>] = []
            repeat {
                let end = min(offset + Wire.chunkSize, export.buffer.count)
                var out = channel.allocator.buffer(capacity: end - offset + 22)
                out.writeInteger(UInt32(end - offset + 18))
                out.writeInteger(Wire.version)
                out.writeInteger(Wire.FrameType.dataChunk.rawValue)
                out.writeInteger(transfer)
                out.writeInteger(UInt64(offset))
                _ = export.buffer.bytes.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
                inFlight.append(channel.writeAndFlush(out))
                if inFlight.count >= 8 {
                    do { try await inFlight.removeFirst().get() } catch { return }
                    armDeadline(export.call)
                }
                offset = end
            } while offset < export.buffer.count
        }
    }

    func finishImport(_ key: ImportKey) {
        guard let imp = state.withLock({ $0.imports.removeValue(forKey: key) }) else { return }
        imp.link?.touch(now)
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: DataBuffer(imp.bytes))
    }

    func failImport(_ key: ImportKey) {
        guard let imp = state.withLock({ $0.imports.removeValue(forKey: key) }) else { return }
        imp.link?.touch(now)
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: nil)
    }
}
