import Infoset
import Logging
import NIOCore
import ServiceKernel
import Synchronization

/// The TCP data plane, the fallback every node has: buffers move on a connection of their own,
/// pulled by the receiver in chunks, so a large buffer never stalls the control connection.
///
/// Where a buffer leaves: `export` offers it; the receiver's DATA_PULL arrives on a data
/// connection at this node's cluster port, and `send(pull:)` streams its chunks on that
/// connection's event loop. Where it lands: `fetch` (TCPImports.swift) opens a `DataLink` to the
/// sender, which reads each chunk straight into the buffer being imported.
///
/// The plane's state is behind its own lock, never the network manager's.
final class TCPPlane: DataPlane {
    let kind = PlaneKind.tcp
    let config: ClusterConfig
    let logger: Logger
    /// Where imports land: the pool of the NUMA node of the interface their link uses.
    let pools: BufferPools
    let state = Mutex(State())
    let owner = HostLink()

    struct State {
        /// Buffers offered to peers.
        var offers = OfferLedger<Void>()
        /// Buffers being pulled, by sender and the sender's transfer number (two senders number alike).
        var imports: [ImportKey: Import] = [:]
        /// The links buffers are pulled over, by peer (opening or open).
        var links: [String: OpenDataLink] = [:]
        var linkGeneration: UInt64 = 0
        /// Bytes and buffers moved, by peer.
        var traffic: [String: PeerTraffic] = [:]

        mutating func count(_ peer: String, _ change: (inout PeerTraffic) -> Void) {
            change(&traffic[peer, default: PeerTraffic(node: peer, plane: "tcp")])
        }
    }

    init(config: ClusterConfig, logger: Logger, pools: BufferPools) {
        self.config = config
        self.logger = logger
        self.pools = pools
    }


    // MARK: offers

    /// The offer names the transfer number, which the receiver's DATA_PULL asks for.
    func export(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) async -> Result<(transfer: UInt64, offer: Wire.Offer), Fault> {
        let transfer = state.withLock { $0.offers.offer(Offering(buffer: buffer, call: call, peer: peer, expires: expires), ()) }
        var w = ByteWriter()
        w.u64(transfer)
        return .success((transfer, Wire.Offer(plane: kind.rawValue, descriptor: w.bytes)))
    }

    func release(_ transfers: [UInt64]) {
        state.withLock { _ = $0.offers.withdraw(transfers) }
    }

    func tick(now: UInt64) {
        state.withLock { _ = $0.offers.withdrawLapsed(at: now) }
        retireIdleLinks(now: now)
    }

    func stop() {
        for peer in state.withLock({ Array($0.links.keys) }) { closeLink(to: peer) }
    }

    func peerEnded(_ peer: String) { closeLink(to: peer) }

    func lapsingBytes(to peer: String) -> Int { state.withLock { $0.offers.lapsingBytes(to: peer) } }

    var traffic: [PeerTraffic] {
        state.withLock { s in
            var t = s.traffic
            s.offers.countOffers(into: &t, plane: kind)
            for k in s.imports.keys { t[k.peer, default: PeerTraffic(node: k.peer, plane: kind.name)].receiving += 1 }
            return t.keys.sorted().map { t[$0]! }
        }
    }

    // MARK: the sender's end

    /// Answers a DATA_PULL from `peer`: streams the exported buffer in chunks on `connection`, eight
    /// in flight at a time so memory stays bounded. Each chunk written pushes the call's deadline
    /// on: a large buffer that is moving is not a call that timed out.
    func send(pull payload: [UInt8], from peer: String, on connection: PeerConnection) {
        var r = ByteReader(payload)
        guard let transfer = try? r.u64() else { return }
        // Only the peer the buffer was sent to may pull it: to any other, it does not exist.
        guard let export = state.withLock({ $0.offers.offered(transfer, to: peer)?.offering }) else {
            var w = ByteWriter()
            w.u64(transfer)
            w.u64(UInt64.max)  // "no such transfer", with no data: the puller faults the request
            connection.send(Wire.Frame(.dataChunk, w.bytes))
            return
        }
        // Chunks go straight to the channel, not through the connection's queue of control frames.
        let channel = connection.channel
        state.withLock { $0.count(peer) { $0.sending += 1 } }
        Task {
            defer { state.withLock { $0.count(peer) { $0.sending -= 1 } } }
            var offset = 0
            var inFlight: [(EventLoopFuture<Void>, Int)] = []
            repeat {
                let end = min(offset + Wire.chunkSize, export.buffer.count)
                var out = channel.allocator.buffer(capacity: end - offset + 22)
                out.writeInteger(UInt32(end - offset + 18))
                out.writeInteger(Wire.version)
                out.writeInteger(Wire.FrameType.dataChunk.rawValue)
                out.writeInteger(transfer)
                out.writeInteger(UInt64(offset))
                _ = export.buffer.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[offset..<end])) }
                inFlight.append((channel.writeAndFlush(out), end - offset))
                if inFlight.count >= 8 {
                    let (written, n) = inFlight.removeFirst()
                    do { try await written.get() } catch { return }
                    state.withLock { $0.count(peer) { $0.bytesSent += UInt64(n) } }
                    host?.armDeadline(export.call)
                }
                offset = end
            } while offset < export.buffer.count
            for (written, n) in inFlight {
                do { try await written.get() } catch { return }
                state.withLock { $0.count(peer) { $0.bytesSent += UInt64(n) } }
            }
            // Every byte is on its way: the offer's lease ends here, not when the call does, so a
            // handler that runs long after its buffer arrived does not keep the sender's copy.
            release([transfer])
        }
    }
}
