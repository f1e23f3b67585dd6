import Synchronization

/// Requests taken and not yet answered: the gateway counts from the task a request starts to the
/// moment its answer is written (or its connection closes), the network manager from a peer's
/// request taken to its reply queued. A stopping node closes it (no request is taken after) and
/// waits for it to reach zero, so the reply to the very request that stopped it (a power Submit
/// to `/os/node`, from a client or another node) and every call under way get out before the
/// services go, and clients that keep calling cannot hold the stop up.
public final class AnswersOwed: Sendable {
    private struct State {
        var count = 0
        var closed = false
        var nextWaiter: UInt64 = 0
        /// Each resumed once, by whichever comes first: the count reaching zero, or its bound.
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    public var count: Int { state.withLock { $0.count } }

    /// Counts a request taken; false, and nothing counted, once closed: the caller turns the
    /// request away (`Fault.stopping`). One lock for both, so no request is counted after a drain
    /// has begun.
    public func begin() -> Bool {
        state.withLock { s in
            guard !s.closed else { return false }
            s.count += 1
            return true
        }
    }

    /// Takes no request from now on.
    public func close() { state.withLock { $0.closed = true } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    public func end() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.count -= 1
            guard s.count == 0 else { return [] }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns once nothing is owed, or after `bound`: a call that does not end (a handler that
    /// never returns) cannot hold a stop up for longer. The waiter is registered before its
    /// timer starts, so the timer always finds it (or finds it already answered).
    public func drained(within bound: Duration) async {
        let id = state.withLock { s in
            defer { s.nextWaiter += 1 }
            return s.nextWaiter
        }
        let timer = Mutex<Task<Void, Never>?>(nil)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let waiting = state.withLock { s -> Bool in
                guard s.count > 0 else { return false }
                s.waiters[id] = c
                return true
            }
            guard waiting else { return c.resume() }
            // Unstructured, so a cancelled caller (the stopping node) still gets its full bound.
            timer.withLock { $0 = Task { [self] in
                try? await Task.sleep(for: bound)  // the bound, not a wait for the answers
                state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            } }
        }
        timer.withLock { $0?.cancel() }
    }
}
