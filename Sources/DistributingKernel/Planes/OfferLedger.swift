/// The buffers a plane has offered to peers, by transfer number: one bookkeeping for the three
/// planes, each keeping beside an offer what it needs of its own (`Extra`: nothing for TCP, the
/// frame key for AF_XDP, the memory window for RDMA). A plane holds its ledger under its own
/// lock. Every rule about offers is here, once: numbers are never reused, an offer is the one
/// peer's it was made to, a notification's or a reply's lapses at its time, and a dead peer's
/// offers all go.
struct OfferLedger<Extra> {
    struct Entry {
        var offering: Offering
        var extra: Extra
    }

    private var entries: [UInt64: Entry] = [:]
    private var next: UInt64 = 1

    /// Records an offer; its transfer number.
    mutating func offer(_ offering: Offering, _ extra: Extra) -> UInt64 {
        defer { next += 1 }
        entries[next] = Entry(offering: offering, extra: extra)
        return next
    }

    subscript(transfer: UInt64) -> Entry? {
        get { entries[transfer] }
        set { entries[transfer] = newValue }
    }

    /// The offer `transfer`, if it was made to `peer`: to any other peer it does not exist.
    func offered(_ transfer: UInt64, to peer: String) -> Entry? {
        entries[transfer].flatMap { $0.offering.peer == peer ? $0 : nil }
    }

    /// Withdraws offers; those that were still there.
    mutating func withdraw(_ transfers: some Sequence<UInt64>) -> [(transfer: UInt64, entry: Entry)] {
        transfers.compactMap { t in entries.removeValue(forKey: t).map { (t, $0) } }
    }

    /// Withdraws the offers whose time has come.
    mutating func withdrawLapsed(at now: UInt64) -> [(transfer: UInt64, entry: Entry)] {
        withdraw(entries.filter { $0.value.offering.lapsed(at: now) }.map(\.key))
    }

    /// The transfer numbers of the offers made to `peer`.
    func transfers(to peer: String) -> [UInt64] { entries.filter { $0.value.offering.peer == peer }.map(\.key) }

    /// The bytes offered to `peer` that only lapsing withdraws (`DataPlane.lapsingBytes`).
    func lapsingBytes(to peer: String) -> Int {
        entries.values.reduce(0) { sum, e in e.offering.peer == peer && e.offering.expires != nil ? sum + e.offering.buffer.count : sum }
    }

    /// Adds each peer's count of offers to `traffic` (`PeerTraffic.offered`).
    func countOffers(into traffic: inout [String: PeerTraffic], plane: PlaneKind) {
        for e in entries.values { traffic[e.offering.peer, default: PeerTraffic(node: e.offering.peer, plane: plane.name)].offered += 1 }
    }

    var count: Int { entries.count }
}

extension OfferLedger.Entry: Sendable where Extra: Sendable {}
extension OfferLedger: Sendable where Extra: Sendable {}
