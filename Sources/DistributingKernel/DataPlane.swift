import Infoset
import ServiceKernel

/// How the bytes of buffers referenced by messages move between nodes: the control part of a
/// message carries only (id, length, transfer), and a data plane moves the bytes into memory the
/// receiver owns before the service sees the message. Each plane is a type of its own with its
/// own lock (`TCPPlane` today; RDMA READ and AF_XDP frames implement this same seam next), so a
/// plane busy with a transfer never holds up the control path or the failure detector.
protocol DataPlane: AnyObject, Sendable {
    /// The plane's name in `/os/dataplane` and on the wire's offers.
    var name: String { get }
    /// Offers `buffer` to `peer` alone for the call `call` (0 for a notification, whose offer
    /// lapses at `expires` instead); the transfer number goes in the message.
    func export(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) -> UInt64
    /// Withdraws offers once their call has ended.
    func release(_ transfers: [UInt64])
    /// Brings one offered buffer from `peer` into this node's pool memory, or says why it cannot.
    func fetch(transfer: UInt64, length: Int, from peer: String) async -> Result<DataBuffer, Fault>
    /// The protocol's clock: lapsed offers are withdrawn, idle connections closed.
    func tick(now: UInt64)
    /// `peer` died or left: what moves to or from it ends now.
    func peerEnded(_ peer: String)
    /// This node stops: every connection of the plane closes.
    func stop()
    /// What the plane has moved, per peer, for `/os/dataplane`.
    var traffic: [PeerTraffic] { get }
}

/// What one plane has moved to and from one peer since this node started.
public struct PeerTraffic: Codable, Sendable, Equatable {
    /// The peer's node name.
    public var node: String
    public var plane: String
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Buffers offered to the peer and not yet withdrawn.
    public var offered = 0
    /// Buffers being sent to the peer now (pulled, not all written).
    public var sending = 0
    /// Buffers being brought from the peer now.
    public var receiving = 0
    /// Buffers brought from the peer whole.
    public var received = 0
    /// Buffers from the peer that did not arrive: the link ended, a chunk failed to open, the
    /// offer was gone.
    public var failed = 0

    public init(node: String, plane: String) {
        self.node = node
        self.plane = plane
    }
}

extension NetworkManager {
    /// Pulls every referenced buffer from the sending node, all at once; a fault if any cannot be had.
    func fetchBuffers(_ incoming: Wire.Incoming, from peer: String, into m: inout Message) async -> Fault? {
        let plane = dataPlane
        let arrived = await withTaskGroup(of: (Int, Result<DataBuffer, Fault>).self) { group in
            for (i, b) in incoming.buffers.enumerated() {
                group.addTask { (i, await plane.fetch(transfer: b.transfer, length: b.length, from: peer)) }
            }
            var out = [Result<DataBuffer, Fault>](repeating: .failure(.unreachable("")), count: incoming.buffers.count)
            for await (i, result) in group { out[i] = result }
            return out
        }
        var refs: [BufferRef] = []
        for (b, result) in zip(incoming.buffers, arrived) {
            switch result {
            case .success(let buffer): refs.append(BufferRef(id: b.id, buffer: buffer))
            case .failure(let fault): return Fault(code: fault.code, subcode: fault.subcode, reason: "buffer \(b.id) from \(peer): \(fault.reason)")
            }
        }
        m.buffers = refs
        return nil
    }

    /// What the data planes have moved, per peer, for `/os/dataplane`.
    public var dataTraffic: [PeerTraffic] { dataPlane.traffic }
}
