import NIOCore

/// Membership's shell: the SWIM machine and what only it uses — its datagram socket, the
/// addresses its members resolve to, its timers' last runs. Confined to the failure detector's
/// loop (`MembershipDatagrams.loop`), where its datagrams are read and its clock ticks; every other
/// input (a SWIM frame on a peer connection, the join, the leave) hops there
/// (`NetworkManager.onMembershipLoop`). So it takes no lock: what others read of it — the members
/// for routing, `/os/cluster` and the metrics — is the snapshot it publishes (`memberView`), and a
/// read off the loop is a trap (`NIOLoopBoundBox`), not a race.
struct MembershipShell {
    var membership: Membership
    var datagrams: (any Channel)?
    /// Members' "host:port" as socket addresses, and the names being looked up (off this loop:
    /// `NetworkManager.resolve`).
    var resolved: [String: SocketAddress] = [:]
    var resolving: Set<String> = []
    /// Names whose last lookup failed, and when (the protocol clock's milliseconds); such a name
    /// is not looked up again for `retryLookupAfter` milliseconds.
    var unresolved: [String: UInt64] = [:]
    var retryLookupAfter: UInt64 = 5000
    /// Looks a host name up; blocks its thread while it does (a test puts a slow one here).
    var lookUpHost: @Sendable (String, Int) -> SocketAddress? = { host, port in try? SocketAddress.makeAddressResolvingHost(host, port: port) }
    /// When the namespace last synced, leases were last swept and subscriptions on other nodes
    /// last renewed (the protocol clock's milliseconds).
    var lastSync: UInt64 = 0
    var lastLeaseSweep: UInt64 = 0
    var lastRenewal: UInt64 = 0
}

/// What membership last published, for whoever reads it from any thread.
/// Published only from membership's loop, so in the order membership made its changes.
struct MemberView: Sendable {
    /// This node as membership sees it (its incarnation moves when it refutes a suspicion).
    var me: Membership.Member?
    var members: [String: Membership.Member] = [:]

    /// The others that are alive or suspected, by name.
    var live: [Membership.Member] { Membership.live(members) }
}

extension NetworkManager {
    /// Runs `body` on membership's loop: at once when called there, else queued there behind what
    /// is queued already.
    func onMembershipLoop(_ body: @escaping @Sendable () -> Void) {
        let loop = MembershipDatagrams.loop
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    /// `body` with membership's shell, on its loop, from anywhere: for the starts and stops, which
    /// wait for it.
    func withMembership<T: Sendable>(_ body: @escaping @Sendable (inout MembershipShell) -> T) async throws -> T {
        try await MembershipDatagrams.loop.submit { [self] in body(&shell.value) }.get()
    }
}
