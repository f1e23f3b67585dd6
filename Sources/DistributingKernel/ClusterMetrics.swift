import ServiceKernel

/// What the distributing kernel shows at `/metrics` besides remote calls (counted as they end,
/// in Calls/RemoteCalls.swift): membership and the data planes, read from their own counts when scraped.
extension NetworkManager {
    func collectMetrics(_ m: NodeMetrics) {
        // This node counts itself: alive, as far as it knows.
        let members = memberView.withLock { [Membership.Status.alive] + $0.members.values.map(\.status) }
        for status in [Membership.Status.alive, .suspect, .dead, .left] {
            m.gauge("decos_members", [("status", "\(status)")]).set(members.count { $0 == status })
        }
        m.mirror("decos_membership_datagrams_dropped_total", [("reason", "unsealed")], total: droppedDatagrams.unsealed.load(ordering: .relaxed))
        m.mirror("decos_membership_datagrams_dropped_total", [("reason", "replayed")], total: droppedDatagrams.replayed.load(ordering: .relaxed))
        m.mirror("decos_membership_datagrams_dropped_total", [("reason", "backlog")], total: droppedDatagrams.overflowed.load(ordering: .relaxed))
        for t in dataTraffic {
            let labels = [("plane", t.plane), ("peer", t.node)]
            m.mirror("decos_dataplane_bytes_total", labels + [("direction", "sent")], total: Int(clamping: t.bytesSent))
            m.mirror("decos_dataplane_bytes_total", labels + [("direction", "received")], total: Int(clamping: t.bytesReceived))
            m.mirror("decos_dataplane_transfers_total", labels + [("outcome", "received")], total: t.received)
            m.mirror("decos_dataplane_transfers_total", labels + [("outcome", "failed")], total: t.failed)
            m.mirror("decos_dataplane_chunks_resent_total", labels, total: t.resent)
            m.gauge("decos_dataplane_buffers", labels + [("state", "offered")]).set(t.offered)
            m.gauge("decos_dataplane_buffers", labels + [("state", "sending")]).set(t.sending)
            m.gauge("decos_dataplane_buffers", labels + [("state", "receiving")]).set(t.receiving)
        }
    }

    /// A member's status changed: joins, suspicions, deaths, departures and returns, counted.
    func countChange(_ member: Membership.Member) {
        kernel.metrics.counter("decos_membership_changes_total", [("status", "\(member.status)")]).increment()
    }
}
