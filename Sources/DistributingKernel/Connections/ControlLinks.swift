import NIOCore
import Synchronization

/// The control connections of this node and what each authenticated peer said of itself in its
/// HELLO, under a lock of their own: a remote call finds its connection here without waiting
/// behind membership, and membership never waits behind a connection being opened. The network
/// manager (`NetworkManager.connection`) opens connections; this records them.
final class ControlLinks: Sendable {
    struct Link {
        var connection: PeerConnection?
        var connecting = false
        var waiters: [CheckedContinuation<PeerConnection?, Never>] = []
    }

    /// What a peer's HELLO said: where it listens, and the data planes it takes buffers on
    /// (`PlaneKind` bits; from control connections only).
    struct Hello {
        var address: String
        var planes: UInt8?
    }

    private struct State {
        /// By peer name (or "@address" for a seed not yet known by name).
        var links: [String: Link] = [:]
        var hellos: [String: Hello] = [:]
        /// Connections this node opened whose handshake is under way, with who waits for it.
        var handshakes: [ObjectIdentifier: Ready] = [:]
        /// Control connections peers opened to this node, by peer: this node's replies to a
        /// peer's requests go back on them.
        var inbound: [String: [ObjectIdentifier: PeerConnection]] = [:]
    }

    private let state = Mutex(State())

    /// What to do for a connection to `key`.
    enum Step { case ready(PeerConnection), wait, connect }

    /// The open connection to `key`, or else whether another caller is opening it (wait) or this
    /// one should (connect: marked as opening).
    func step(_ key: String) -> Step {
        state.withLock { s in
            if let c = s.links[key]?.connection, c.isActive { return .ready(c) }
            if s.links[key]?.connecting == true { return .wait }
            s.links[key, default: Link()].connecting = true
            return .connect
        }
    }

    /// Waits for the connection to `key` another caller is opening.
    func wait(for key: String) async -> PeerConnection? {
        await withCheckedContinuation { c in
            let resumeNow: PeerConnection?? = state.withLock { s in
                if s.links[key]?.connecting == true { s.links[key]!.waiters.append(c); return nil }
                return .some(s.links[key]?.connection)
            }
            if let r = resumeNow { c.resume(returning: r) }
        }
    }

    /// Records the outcome of opening `key` and answers whoever waited for it. The entry may be
    /// gone: the peer was declared dead while we connected (its waiters were answered then). A
    /// connection that did open is kept all the same: the peer answered, and membership will
    /// hear of it.
    func opened(_ key: String, _ connection: PeerConnection?) {
        let waiters = state.withLock { s in
            let waiting = s.links[key]?.waiters ?? []
            s.links[key] = Link(connection: connection)
            return waiting
        }
        for w in waiters { w.resume(returning: connection) }
    }

    /// The open connection to `peer`, if there is one.
    func open(to peer: String) -> PeerConnection? {
        state.withLock { s in s.links[peer]?.connection.flatMap { $0.isActive ? $0 : nil } }
    }

    /// A connection this node opened starts its handshake; `ready` learns how it ends.
    func handshaking(_ channel: any Channel, _ ready: Ready) {
        state.withLock { $0.handshakes[ObjectIdentifier(channel)] = ready }
    }

    func handshakeEnded(_ channel: any Channel) {
        _ = state.withLock { $0.handshakes.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// A peer authenticated: what it said is kept, and a connection this node opened is known by
    /// the peer's name from now on (one opened to a seed's address among them); its waiter, if any.
    func authenticated(_ connection: PeerConnection, peer: String, hello: Hello, outbound: Bool) -> Ready? {
        state.withLock { s in
            Self.keep(hello, of: peer, in: &s)
            guard outbound else {
                if hello.planes != nil { s.inbound[peer, default: [:]][ObjectIdentifier(connection)] = connection }
                return nil
            }
            s.links[peer, default: Link()].connection = connection
            return s.handshakes.removeValue(forKey: ObjectIdentifier(connection.channel))
        }
    }

    /// Keeps what `peer` said; a data connection's HELLO (no planes) leaves the planes its
    /// control connection's gave.
    func heard(_ peer: String, _ hello: Hello) { state.withLock { Self.keep(hello, of: peer, in: &$0) } }

    private static func keep(_ hello: Hello, of peer: String, in s: inout State) {
        var kept = s.hellos[peer] ?? hello
        kept.address = hello.address
        if hello.planes != nil { kept.planes = hello.planes }
        s.hellos[peer] = kept
    }

    /// A connection closed; true if it was this node's link to `peer`.
    func closed(_ connection: PeerConnection, peer: String) -> Bool {
        state.withLock { s in
            s.inbound[peer]?[ObjectIdentifier(connection)] = nil
            if s.inbound[peer]?.isEmpty == true { s.inbound[peer] = nil }
            guard let c = s.links[peer]?.connection, c === connection else { return false }
            s.links[peer]?.connection = nil
            return true
        }
    }

    func hello(of peer: String) -> Hello? { state.withLock { $0.hellos[peer] } }

    /// The open control connections `peer` opened to this node.
    func inbound(from peer: String) -> [PeerConnection] {
        state.withLock { s in (s.inbound[peer] ?? [:]).values.filter(\.isActive) }
    }

    /// The planes each peer said it takes, by name.
    var planes: [String: UInt8] { state.withLock { s in s.hellos.compactMapValues(\.planes) } }

    /// A peer that died or left: its link and what it said go; whoever waited for a connection to
    /// it gets none. Returns the connection to close.
    func forget(_ peer: String) -> PeerConnection? {
        let link = state.withLock { s -> Link? in
            s.hellos[peer] = nil
            s.inbound[peer] = nil
            return s.links.removeValue(forKey: peer)
        }
        for w in link?.waiters ?? [] { w.resume(returning: nil) }
        return link?.connection
    }

    /// Every connection this node opened (to close them when it stops).
    var all: [PeerConnection] { state.withLock { s in s.links.values.compactMap(\.connection) } }
}
