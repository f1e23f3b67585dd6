import Synchronization

/// Room in a queue pair's send queue: each work request posted holds a slot until it completes.
/// Posting into a full send queue fails outright, so whoever posts waits here for a slot instead
/// (a message with many buffers, or many messages at once, post more READs, binds and
/// invalidations than the queue holds).
public final class SendQueueRoom: Sendable {
    private let state: Mutex<(free: Int, waiting: [@Sendable () -> Void])>

    public init(slots: Int) { state = Mutex((slots, [])) }

    /// Runs `post` once a slot is free: at once, or when a `release` frees one. `post` holds the
    /// slot until `release` is called for it.
    public func whenFree(_ post: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            guard s.free > 0 else {
                s.waiting.append(post)
                return false
            }
            s.free -= 1
            return true
        }
        if now { post() }
    }

    /// Frees a slot; the longest waiter takes it.
    public func release() {
        let next = state.withLock { s -> (@Sendable () -> Void)? in
            guard !s.waiting.isEmpty else {
                s.free += 1
                return nil
            }
            return s.waiting.removeFirst()
        }
        next?()
    }
}
