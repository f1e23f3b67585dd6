import Infoset
import ServiceKernel
import Synchronization

/// The data planes, a bit each where a HELLO offers them.
public enum PlaneKind: UInt8, Sendable, CaseIterable {
    case tcp = 1
    case rdma = 2
    case xdp = 4

    public var name: String {
        switch self { case .tcp: "tcp"; case .rdma: "rdma"; case .xdp: "xdp" }
    }

    public init?(name: String) {
        guard let k = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = k
    }

    /// The planes a HELLO's bits name, in this order.
    static func named(by bits: UInt8) -> [PlaneKind] { allCases.filter { bits & $0.rawValue != 0 } }
    static func bits(_ planes: [PlaneKind]) -> UInt8 { planes.reduce(0) { $0 | $1.rawValue } }
}

/// How the bytes of buffers referenced by messages move between nodes: the control part of a
/// message carries only (id, length, an `Offer`: the plane and its descriptor), and a data plane
/// moves the bytes into memory the receiver owns before the service sees the message. Planes are
/// offered in HELLO and chosen per peer (`NetworkManager.plane(to:)`). Each plane is a type of
/// its own with its own lock (`TCPPlane`, `RDMAPlane`, `XDPPlane`), so a plane busy with a
/// transfer never holds up the control path or the failure detector.
protocol DataPlane: AnyObject, Sendable {
    var kind: PlaneKind { get }
    /// The node the plane works for, as far as a plane may see it.
    var owner: HostLink { get }
    /// Offers `buffer` to `peer` alone for the call `call` (0 for a notification's or a reply's,
    /// which no call's end withdraws: it lapses at `expires` instead): the transfer number (its lease) and what goes in the message;
    /// a fault if the plane cannot offer it to that peer.
    func export(_ buffer: DataBuffer, call: UInt64, to peer: String, expires: UInt64?) async -> Result<(transfer: UInt64, offer: Wire.Offer), Fault>
    /// Withdraws offers once their call has ended.
    func release(_ transfers: [UInt64])
    /// Brings one offered buffer from `peer` into this node's pool memory, or says why it cannot.
    func fetch(_ offer: Wire.Offer, length: Int, from peer: String) async -> Result<DataBuffer, Fault>
    /// The protocol's clock: lapsed offers are withdrawn, idle connections closed.
    func tick(now: UInt64)
    /// `peer` died or left: what moves to or from it ends now.
    func peerEnded(_ peer: String)
    /// This node stops: every connection of the plane closes.
    func stop()
    /// What the plane has moved, per peer, for `/os/dataplane`.
    var traffic: [PeerTraffic] { get }
    /// The bytes offered to `peer` that no call's end withdraws (a notification's, a reply's),
    /// neither pulled nor lapsed yet.
    func lapsingBytes(to peer: String) -> Int
    /// Whether the plane reaches a peer listening at `address` ("host:port"); all do but AF_XDP,
    /// whose frames are not routed.
    func reaches(_ address: String) -> Bool
}

extension DataPlane {
    func reaches(_ address: String) -> Bool { true }
    var host: (any PlaneHost)? { owner.host }
    func attach(to host: any PlaneHost) { owner.attach(host) }
    /// The host's clock, in milliseconds.
    var now: UInt64 { host?.now ?? 0 }
}

/// All a data plane may ask of the node it works for (the network manager): its name and where
/// it listens, the protocol's clock, where a peer listens, a control frame to a peer, and a call's
/// deadline moved on while its buffer moves. Nothing of membership, calls or connections beyond.
protocol PlaneHost: AnyObject, Sendable {
    var node: String { get }
    /// Where peers reach this node.
    var advertised: String { get }
    /// The protocol's clock, in milliseconds.
    var now: UInt64 { get }
    func address(of peer: String) -> String?
    /// Sends `frame` to `peer` on its control connection (opened if need be).
    func sendControl(_ frame: Wire.Frame, to peer: String)
    /// A call whose buffer is moving is not a call that stalled: its deadline starts again.
    func armDeadline(_ call: UInt64)
}

/// The host a plane works for. Set once, right after the manager's init (which cannot hand
/// itself out before it is whole); weak, as the manager owns its planes.
final class HostLink: Sendable {
    private struct Weak { weak var host: (any PlaneHost)? }
    private let link = Mutex(Weak())
    var host: (any PlaneHost)? { link.withLock { $0.host } }
    func attach(_ host: any PlaneHost) { link.withLock { $0.host = host } }
}

/// A buffer offered to one peer: the one its message went to, and the only one that may have it.
struct Offering {
    var buffer: DataBuffer
    /// The call it belongs to (it is withdrawn when the call ends), or 0 for a notification's or
    /// a reply's.
    var call: UInt64
    var peer: String
    /// For a notification's or a reply's buffer, which has no call to end: when it is withdrawn.
    var expires: UInt64?

    func lapsed(at now: UInt64) -> Bool { expires.map { $0 <= now } ?? false }
}

/// Which plane a peer's buffers go on, and why: what it offered in its HELLO.
public struct PlaneChoice: Codable, Sendable, Equatable {
    public var node: String
    /// The planes the peer takes buffers on.
    public var offers: String
    /// The plane buffers to it travel on; "none" when there is none in common.
    public var chosen: String
}

/// A buffer offered on a plane, until its call ends.
struct Lease: Sendable, Hashable {
    var plane: PlaneKind
    var transfer: UInt64
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
    /// Chunks sent to the peer again because they were lost on the way (the AF_XDP plane's).
    public var resent = 0

    public init(node: String, plane: String) {
        self.node = node
        self.plane = plane
    }
}

extension NetworkManager {
    /// Pulls every referenced buffer from the sending node, all at once, each on the plane its
    /// offer names; a fault if any cannot be had.
    func fetchBuffers(_ incoming: Wire.Incoming, from peer: String, into m: inout Message) async -> Fault? {
        let offered = self.offered
        let planes = incoming.buffers.map { b in PlaneKind(rawValue: b.offer.plane).flatMap { offered.contains($0) ? self.planes[$0] : nil } }
        if let i = planes.firstIndex(where: { $0 == nil }) {
            let b = incoming.buffers[i]
            return .unreachable("buffer \(b.id) from \(peer) is offered on a data plane (\(PlaneKind(rawValue: b.offer.plane)?.name ?? "#\(b.offer.plane)")) this node does not take")
        }
        let arrived = await withTaskGroup(of: (Int, Result<DataBuffer, Fault>).self) { group in
            for (i, b) in incoming.buffers.enumerated() {
                group.addTask { (i, await planes[i]!.fetch(b.offer, length: b.length, from: peer)) }
            }
            var out: [Int: Result<DataBuffer, Fault>] = [:]
            for await (i, result) in group { out[i] = result }
            return incoming.buffers.indices.map { out[$0]! }
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

    /// The names of the planes this node offers, for `/os/dataplane`.
    public var offeredPlanes: [String] { offered.map(\.name) }

    /// What the data planes have moved, per peer, for `/os/dataplane`.
    public var dataTraffic: [PeerTraffic] { planes.values.flatMap(\.traffic).sorted { ($0.node, $0.plane) < ($1.node, $1.plane) } }

    /// For each peer this node has shaken hands with, the plane its buffers go on.
    public var planeChoices: [PlaneChoice] {
        let offers = links.planes
        return offers.keys.sorted().map { peer in
            let chosen = if case .success(let p) = plane(to: peer) { p.kind.name } else { "none" }
            return PlaneChoice(node: peer, offers: PlaneKind.named(by: offers[peer]!).map(\.name).joined(separator: " "), chosen: chosen)
        }
    }

    /// The planes this node offers, in its order of preference: those the manifest names
    /// (`<DataPlane prefer>`) that this node has.
    var offered: [PlaneKind] { config.dataPlanes.filter { planes[$0] != nil } }

    /// The plane buffers to `peer` travel on: the first this node prefers that the peer offered
    /// in its HELLO; nil (with why) when they have none in common.
    func plane(to peer: String) -> Result<any DataPlane, Fault> {
        planes(to: peer).map { $0[0] }
    }

    /// Every plane this node and `peer` both offer and that reaches it, this node's preferred
    /// first; a fault naming both offers when there is none.
    func planes(to peer: String) -> Result<[any DataPlane], Fault> {
        let theirs = links.hello(of: peer)?.planes ?? PlaneKind.tcp.rawValue
        let at = address(of: peer)
        let common = offered.filter { theirs & $0.rawValue != 0 }.compactMap { planes[$0] }.filter { at.map($0.reaches) ?? true }
        if !common.isEmpty { return .success(common) }
        return .failure(.unreachable("no data plane in common with node \(peer) for buffers: this node offers \(offered.map(\.name).joined(separator: " ")), \(peer) offers \(PlaneKind.named(by: theirs).map(\.name).joined(separator: " "))"))
    }

    /// Offers every buffer of a message to `peer` on one plane: the first in common that can take
    /// them all (an RDMA peer whose queue pair cannot be set up gets them by TCP). A fault, the
    /// first plane's, if none can.
    func export(_ buffers: [BufferRef], call: UInt64, to peer: String, expires: UInt64?) async -> Result<[(lease: Lease, offer: Wire.Offer)], Fault> {
        let candidates: [any DataPlane]
        switch planes(to: peer) {
        case .success(let p): candidates = p
        case .failure(let fault): return .failure(fault)
        }
        var first: Fault?
        for plane in candidates {
            var offered: [(lease: Lease, offer: Wire.Offer)] = []
            var failed: Fault?
            for b in buffers {
                switch await plane.export(b.buffer, call: call, to: peer, expires: expires) {
                case .success(let (transfer, offer)): offered.append((Lease(plane: plane.kind, transfer: transfer), offer))
                case .failure(let fault): failed = fault
                }
                if failed != nil { break }
            }
            guard let failed else { return .success(offered) }
            plane.release(offered.map(\.lease.transfer))
            if first == nil { first = failed }
            logger.info("buffers to \(peer) cannot go on \(plane.kind.name): \(failed.reason)")
        }
        return .failure(first!)
    }
}
