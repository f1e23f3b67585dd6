import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus s: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (they are macros).
        if s & 0x7f == 0 { self = .exited((s >> 8) & 0xff) } else { self = .signaled(s & 0x7f) }
    }

    public var success: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let c): return "exited with status \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        }
    }
}

/// Collects the exit statuses of the node's children and hands each to whoever waits for it.
///
/// Each child is waited for by its pid, on a thread of its own (waitpid blocks): the node shares
/// its process with other code that may have children of its own (a test runner, say), so it never
/// reaps what it did not start. Orphans of the whole system are PID 1's to reap, and PID 1 is the
/// C loop in CDecosInit, not this process.
public final class Reaper: Sendable {
    public static let shared = Reaper()

    private struct State {
        var waiters: [pid_t: CheckedContinuation<ExitStatus, Never>] = [:]
        /// Statuses that arrived before anyone waited (a child that ends at once).
        var early: [pid_t: ExitStatus] = [:]
    }
    private let state = Mutex(State())

    /// Starts a child with `spawn` and waits for it in the background, so its status is kept until
    /// `wait(for:)` asks.
    public func spawn<E: Error>(_ spawn: () -> Result<pid_t, E>) -> Result<pid_t, E> {
        let result = spawn()
        guard case .success(let pid) = result else { return result }
        DispatchQueue(label: "decos.reaper").async {
            var status: Int32 = 0
            while true {
                let r = waitpid(pid, &status, 0)
                if r == pid { self.deliver(pid, ExitStatus(waitStatus: status)); return }
                if r < 0 && errno != EINTR { self.deliver(pid, .exited(-1)); return }
            }
        }
        return result
    }

    private func deliver(_ pid: pid_t, _ status: ExitStatus) {
        let waiter = state.withLock { s -> CheckedContinuation<ExitStatus, Never>? in
            if let w = s.waiters.removeValue(forKey: pid) { return w }
            s.early[pid] = status
            return nil
        }
        waiter?.resume(returning: status)
    }

    /// Waits until the child `pid`, started through `spawn`, ends.
    public func wait(for pid: pid_t) async -> ExitStatus {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> ExitStatus? in
                if let st = s.early.removeValue(forKey: pid) { return st }
                s.waiters[pid] = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}
