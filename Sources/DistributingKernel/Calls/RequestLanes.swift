import Synchronization

/// What is kept in order by a lane: requests from a peer (handed over in arrival order, never
/// waiting for a handler), notifications from a peer to one subscriber, and notifications leaving
/// for one peer.
struct OrderKey: Hashable, Sendable {
    enum Lane: Hashable, Sendable { case requests, notificationsIn, notificationsOut }
    var lane: Lane
    var peer: String
    var to = ""
}

/// Work kept in order per key. One task per key runs while there is work and drains what arrives
/// meanwhile, so a busy key costs no wake-up per job and an idle key costs nothing at all. The
/// queues are this type's alone, under a lock no other part takes.
final class RequestLanes: Sendable {
    typealias Job = @Sendable () async -> Void
    /// Work waiting behind the running job of each key; a key is present only while its job runs.
    private let queues = Mutex<[OrderKey: [Job]]>([:])

    /// Runs `work` after everything queued before it under `key`.
    func run(_ key: OrderKey, _ work: @escaping Job) {
        let idle = queues.withLock { q -> Bool in
            if q[key] != nil { q[key]!.append(work); return false }
            q[key] = []
            return true
        }
        guard idle else { return }
        Task {
            // What queued up while a batch ran is taken at once: one lock per batch, not per job.
            var batch = [work]
            while !batch.isEmpty {
                for job in batch { await job() }
                batch = queues.withLock { q in
                    let waiting = q[key] ?? []
                    q[key] = waiting.isEmpty ? nil : []
                    return waiting
                }
            }
        }
    }

    /// Keys with work running or waiting.
    var busy: Int { queues.withLock { $0.count } }
}
