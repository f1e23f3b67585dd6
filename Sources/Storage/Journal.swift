import Dispatch
import Synchronization

/// Commits one durable service's writes in the order they were appended, with group commit:
/// while one transaction syncs, the writes appended meanwhile wait, and the next transaction takes
/// them all, so concurrent writers share one sync.
///
/// After a failed commit (a full disk, an I/O error) the service's state in memory is ahead of
/// its file. Until the service has put back what the file holds (`recover`), every append fails
/// at once too: a change made on top of one that was not stored is not stored either.
public final class Journal: Sendable {
    public let store: ServiceStore
    /// The writer: one queue a service, which may block in fsync without holding up Swift's pool.
    private let queue: DispatchQueue
    private let state = Mutex(State())
    /// Sync latencies, for `/os/storage` and `/metrics`.
    public let syncs = SyncTimes()

    private struct Entry {
        var writes: [ServiceStore.Write]
        var ticket: Ticket
        var stored: (@Sendable () -> Void)?
    }

    private struct State {
        var pending: [Entry] = []
        var draining = false
        /// Why the last commit failed, until `recover`.
        var failure: StorageError?
        /// Keys written by appends that failed: what `recover` puts back.
        var dirty: Set<String> = []
        /// The ticket of the last append, and whether it has completed.
        var last: Ticket?
    }

    public init(_ store: ServiceStore) {
        self.store = store
        queue = DispatchQueue(label: "decos.journal " + store.file)
    }

    /// Queues `writes` to be committed after everything appended before. `stored` runs on the
    /// writer once they are (before the ticket completes, in append order: where a service's
    /// notifications go out, so subscribers see changes in the order they were stored).
    public func append(_ writes: [ServiceStore.Write], stored: (@Sendable () -> Void)? = nil) -> Ticket {
        let ticket = Ticket()
        let (failure, start) = state.withLock { s -> (StorageError?, Bool) in
            s.last = ticket
            if let f = s.failure {
                for w in writes { s.dirty.insert(w.key) }
                return (f, false)
            }
            s.pending.append(Entry(writes: writes, ticket: ticket, stored: stored))
            defer { s.draining = true }
            return (nil, !s.draining)
        }
        if let failure { ticket.complete(.failure(failure)) }
        if start { queue.async { self.drain() } }
        return ticket
    }

    /// A ticket that completes once everything appended so far is stored; nil when it already is.
    /// A read waits on it, so that it never answers with a change that may yet be lost (nor with
    /// one that was, until the service has put back what its file holds).
    public func barrier() -> Ticket? {
        state.withLock { s in
            guard let last = s.last, s.failure != nil || !last.isComplete else { return nil }
            return last
        }
    }

    /// After a failure: the keys whose value in memory may differ from the file, for the service
    /// to put back from it (then `recovered`). Appends go on failing until then.
    public func dirtyKeys() -> Set<String> { state.withLock { $0.dirty } }

    /// Ends a failure once `keys` are put back, letting appends through again. Called on the
    /// service's actor in the same turn as the putting back, so no change is made on the dirty
    /// state after; keys made dirty since (none, in that one turn) stay dirty.
    public func recovered(_ keys: Set<String>) {
        state.withLock { s in
            s.dirty.subtract(keys)
            if s.dirty.isEmpty { s.failure = nil }
        }
    }

    /// Commits what is pending, a transaction at a time, until nothing is.
    private func drain() {
        while let group = state.withLock({ s -> [Entry]? in
            guard !s.pending.isEmpty else { s.draining = false; return nil }
            defer { s.pending = [] }
            return s.pending
        }) {
            let started = SyncTimes.now()
            do {
                try store.transaction { () throws(StorageError) in
                    for e in group { try store.apply(e.writes) }
                }
                syncs.record(SyncTimes.now() &- started)
                for e in group {
                    e.stored?()
                    e.ticket.complete(.success(()))
                }
            } catch {
                // Everything pending was made on top of what failed: it fails with it.
                let failed = state.withLock { s -> [Entry] in
                    s.failure = error
                    let all = group + s.pending
                    s.pending = []
                    for e in all { for w in e.writes { s.dirty.insert(w.key) } }
                    return all
                }
                for e in failed { e.ticket.complete(.failure(error)) }
            }
        }
    }
}

/// One append's outcome, awaited by the request that made it and by reads behind it (a barrier):
/// as many waiters as come, each resumed once.
public final class Ticket: Sendable {
    private struct State {
        var result: Result<Void, StorageError>?
        var waiters: [CheckedContinuation<Result<Void, StorageError>, Never>] = []
    }
    private let state = Mutex(State())

    public init() {}

    var isComplete: Bool { state.withLock { $0.result != nil } }

    func complete(_ result: Result<Void, StorageError>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Result<Void, StorageError>, Never>] in
            s.result = result
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: result) }
    }

    /// Waits until the writes are stored, or have failed; on the caller's executor (a service's
    /// actor, which other requests may enter meanwhile).
    nonisolated(nonsending)
    public func wait() async -> Result<Void, StorageError> {
        if let done = state.withLock({ $0.result }) { return done }
        return await withCheckedContinuation { c in
            let done = state.withLock { s -> Result<Void, StorageError>? in
                if s.result == nil { s.waiters.append(c) }
                return s.result
            }
            if let done { c.resume(returning: done) }
        }
    }
}
