import Infoset
import NIOCore
import ServiceKernel

/// How the bytes of buffers referenced by messages move between nodes: the control part of a
/// message carries only (id, length, transfer), and a data plane moves the bytes into memory the
/// receiver owns before the service sees the message. The TCP data connection below is the one
/// implementation today; RDMA READ (verbs) and AF_XDP frames implement this same protocol next.
public protocol DataPlane: Sendable {
    /// Offers `buffer` to other nodes for the call `call`; the transfer number goes in the message.
    func export(_ buffer: DataBuffer, call: UInt64) -> UInt64
    /// Withdraws offers once their call has ended.
    func release(_ transfers: [UInt64])
    /// Brings one offered buffer from `peer` into this node's memory; nil if it cannot be had.
    func fetch(transfer: UInt64, length: Int, from peer: String) async -> DataBuffer?
}

/// The TCP data plane: buffers move on their own connection, pulled by the receiver in chunks, so
/// a large buffer never stalls the control connection.
extension NetworkManager: DataPlane {
    public func export(_ buffer: DataBuffer, call: UInt64) -> UInt64 {
        state.withLock { s in
            defer { s.nextTransfer += 1 }
            s.exports[s.nextTransfer] = (buffer, call)
            return s.nextTransfer
        }
    }

    public func release(_ transfers: [UInt64]) {
        state.withLock { s in for t in transfers { s.exports[t] = nil } }
    }

    public func fetch(transfer: UInt64, length: Int, from peer: String) async -> DataBuffer? {
        guard let member = state.withLock({ $0.membership.members[peer] }),
              let channel = await connection(to: peer, address: member.address, role: .data) else { return nil }
        return await withCheckedContinuation { c in
            let imp = Import(length: length, peer: peer)
            imp.continuation = c
            state.withLock { $0.imports[transfer] = imp }
            var w = ByteWriter()
            w.u64(transfer)
            channel.send(Wire.Frame(.dataPull, w.bytes))
            if length == 0 { finishImport(transfer) }
        }
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
        guard let (buffer, call) = state.withLock({ $0.exports[transfer] }) else {
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
                let end = min(offset + Wire.chunkSize, buffer.count)
                var out = channel.allocator.buffer(capacity: end - offset + 22)
                out.writeInteger(UInt32(end - offset + 18))
                out.writeInteger(Wire.version)
                out.writeInteger(Wire.FrameType.dataChunk.rawValue)
                out.writeInteger(transfer)
                out.writeInteger(UInt64(offset))
                buffer.bytes.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
                inFlight.append(channel.writeAndFlush(out))
                if inFlight.count >= 8 {
                    do { try await inFlight.removeFirst().get() } catch { return }
                    armDeadline(call)
                }
                offset = end
            } while offset < buffer.count
        }
    }

    /// Copies one piece of a chunk to its place in the buffer being imported.
    func handleDataChunk(_ chunk: inout ByteBuffer, transfer: UInt64, offset: UInt64) {
        guard let imp = state.withLock({ $0.imports[transfer] }) else { return }
        if offset == UInt64.max {
            failImport(transfer)
            return
        }
        let n = chunk.readableBytes
        guard offset <= UInt64(imp.bytes.count), n <= imp.bytes.count - Int(offset) else {
            failImport(transfer)
            return
        }
        imp.bytes.withUnsafeMutableBytes { dst in
            // Pieces of one import arrive on one connection's event loop, so they never overlap in time.
            chunk.withUnsafeReadableBytes { src in
                dst.baseAddress!.advanced(by: Int(offset)).copyMemory(from: src.baseAddress!, byteCount: n)
            }
        }
        imp.received += n
        if imp.received >= imp.bytes.count { finishImport(transfer) }
    }

    func finishImport(_ transfer: UInt64) {
        guard let imp = state.withLock({ $0.imports.removeValue(forKey: transfer) }) else { return }
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: DataBuffer(imp.bytes))
    }

    func failImport(_ transfer: UInt64) {
        guard let imp = state.withLock({ $0.imports.removeValue(forKey: transfer) }) else { return }
        let c = imp.continuation
        imp.continuation = nil
        c?.resume(returning: nil)
    }
}
