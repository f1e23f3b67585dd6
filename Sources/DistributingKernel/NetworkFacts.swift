/// What the distributing kernel's own services show — `/os/cluster` its members, `/os/dataplane`
/// its planes and their traffic — and nothing more of the network manager: they find it as the
/// kernel's remote dispatcher taking this role too (`kernel.remote as? any NetworkFacts`), so they
/// neither know the manager's type nor reach into its state. Each is a snapshot, taken under the
/// lock of the part that owns it.
protocol NetworkFacts: AnyObject, Sendable {
    /// This node first, then the others by name.
    var members: [Membership.Member] { get }
    var offeredPlanes: [String] { get }
    var dataTraffic: [PeerTraffic] { get }
    var planeChoices: [PlaneChoice] { get }
}

extension NetworkManager: NetworkFacts {}
