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

/// The one place exit statuses are collected and handed to whoever waits for that child.
///
/// As PID 1 every orphan of the system is reparented to us, so one thread waits for any child
/// (`waitpid(-1)`) and statuses nobody asked for are dropped after reaping (no zombies). In hosted
/// mode the process shares its children with other code (a test runner, say), so each child we
/// started is waited for by its own pid only.
public final class Reaper: Sendable {
    public static let shared = Reaper(reapsAll: getpid() == 1)

    private let reapsAll: Bool
    private struct State {
        var waiters: [pid_t: CheckedContinuation<ExitStatus, Never>] = [:]
        /// Statuses that arrived before anyone waited (a child that ends at once).
        var early: [pid_t: ExitStatus] = [:]
        var tracked: Set<pid_t> = []
        var threadRunning = false
    }
    private let state = Mutex(State())

    init(reapsAll: Bool) { self.reapsAll = reapsAll }

    /// Starts a child with `spawn` and registers it, so its status is kept until `wait(for:)` asks.
    /// The lock is held across the spawn: as PID 1 the reaper thread could otherwise reap the child
    /// before it is registered and drop its status as an orphan's.
    public func spawn<E: Error>(_ spawn: () -> Result<pid_t, E>) -> Result<pid_t, E> {
        var result: Result<pid_t, E>!
        let startThread = state.withLock { s -> Bool in
            result = spawn()
            guard case .success(let pid) = result else { return false }
            s.tracked.insert(pid)
            if !reapsAll { return true }
            if s.threadRunning { return false }
            s.threadRunning = true
            return true
        }
        guard startThread, case .success(let pid) = result else { return result }
        let queue = DispatchQueue(label: "decos.reaper")
        if reapsAll {
            queue.async { self.reapAll() }
        } else {
            queue.async {
                var status: Int32 = 0
                while true {
                    let r = waitpid(pid, &status, 0)
                    if r == pid { self.deliver(pid, ExitStatus(waitStatus: status)); return }
                    if r < 0 && errno != EINTR { self.deliver(pid, .exited(-1)); return }
                }
            }
        }
        return result
    }

    private func reapAll() {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, 0)
            if pid > 0 { deliver(pid, ExitStatus(waitStatus: status)); continue }
            if errno == EINTR { continue }
            // ECHILD: nothing to wait for; the next track() starts the thread again.
            let stop = state.withLock { s -> Bool in
                if s.tracked.isEmpty { s.threadRunning = false; return true }
                return false
            }
            if stop { return }
            usleep(10_000)
        }
    }

    private func deliver(_ pid: pid_t, _ status: ExitStatus) {
        let waiter = state.withLock { s -> CheckedContinuation<ExitStatus, Never>? in
            guard s.tracked.remove(pid) != nil else { return nil }  // an orphan: reaped, nobody to tell
            if let w = s.waiters.removeValue(forKey: pid) { return w }
            s.early[pid] = status
            return nil
        }
        waiter?.resume(returning: status)
    }

    /// Waits until the tracked child `pid` ends.
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
