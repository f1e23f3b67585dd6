import CDecosInit
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A program the node keeps running, as the manifest's `<Process>` names it.
public struct ProcessSpec: Sendable, Equatable {
    public enum Restart: String, Sendable, CaseIterable {
        /// Started again whenever it ends.
        case always
        /// Started again when it exits with a nonzero status or is killed.
        case onFailure = "on-failure"
        /// Run once.
        case never
    }

    public var name: String
    public var path: String
    public var arguments: [String]
    public var environment: [String]
    public var restart: Restart

    public init(name: String, path: String, arguments: [String] = [], environment: [String] = [], restart: Restart = .onFailure) {
        self.name = name
        self.path = path
        self.arguments = arguments
        self.environment = environment
        self.restart = restart
    }
}

/// What `/os/processes` shows of one supervised process.
public struct ProcessStatus: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable, CaseIterable {
        case running, restarting, exited, failed, stopped
    }

    public var name: String
    public var path: String
    public var state: State
    public var pid: Int32?
    public var restarts: Int
    public var lastExit: String?
    /// Why the last start failed (no such program, not executable).
    public var error: String?
    /// The last line it wrote to stdout or stderr, when the node reads them.
    public var lastOutput: String?
}

/// Starts the manifest's processes, restarts them by their policy with a growing delay, and
/// stops them at shutdown: SIGTERM, then SIGKILL after a grace period.
public final class Supervisor: Sendable {
    private struct Entry {
        var spec: ProcessSpec
        var status: ProcessStatus
        var task: Task<Void, Never>?
        /// Whether its supervising loop runs (a process that exited under its policy has none).
        var supervised = false
        /// Stopped by an operator: not started again until restarted.
        var held = false
        /// Asked to restart while running: started again at once when it exits.
        var restartNow = false
    }
    private let entries = Mutex<[Entry]>([])
    private let observers = Mutex<[@Sendable (ProcessStatus) -> Void]>([])
    private let stopping = Atomic<Bool>(false)
    private let reaper: Reaper
    /// Delays before a restart grow from `minimumBackoff`, doubling, up to `maximumBackoff`; a process
    /// that ran longer than `maximumBackoff` starts again from the minimum.
    public let minimumBackoff: Duration
    public let maximumBackoff: Duration
    public let log: @Sendable (String) -> Void
    /// Where the processes' stdout and stderr lines go; nil: the processes write the node's own
    /// stdout and stderr (the console).
    public let output: (@Sendable (OutputLine) -> Void)?

    public init(reaper: Reaper = .shared, minimumBackoff: Duration = .milliseconds(100), maximumBackoff: Duration = .seconds(10),
                log: @escaping @Sendable (String) -> Void = { _ in }, output: (@Sendable (OutputLine) -> Void)? = nil) {
        self.reaper = reaper
        self.minimumBackoff = minimumBackoff
        self.maximumBackoff = maximumBackoff
        self.log = log
        self.output = output
    }

    public var statuses: [ProcessStatus] { entries.withLock { $0.map(\.status) } }

    /// Calls `changed` with a process's status each time it changes (state, pid, output line).
    public func observe(_ changed: @escaping @Sendable (ProcessStatus) -> Void) { observers.withLock { $0.append(changed) } }

    /// Starts supervising `spec`; its first start happens at once.
    public func start(_ spec: ProcessSpec) {
        let index = entries.withLock { e -> Int in
            e.append(Entry(spec: spec, status: ProcessStatus(name: spec.name, path: spec.path, state: .restarting, restarts: 0), task: nil))
            return e.count - 1
        }
        supervise(index)
    }

    /// Runs the supervising loop of entry `i`, unless one runs already.
    private func supervise(_ i: Int) {
        guard entries.withLock({ e -> Bool in
            guard !e[i].supervised else { return false }
            e[i].supervised = true
            return true
        }) else { return }
        let task = Task { await self.loop(i) }
        entries.withLock { $0[i].task = task }
    }

    private func update(_ i: Int, _ change: (inout ProcessStatus) -> Void) {
        let status = entries.withLock { e -> ProcessStatus in
            change(&e[i].status)
            return e[i].status
        }
        for changed in observers.withLock({ $0 }) { changed(status) }
    }

    /// An operator's restart: a running process is stopped (SIGTERM) and started again as soon as
    /// it exits, not counted as a failure; one that is stopped, exited or failed starts now.
    /// False if no process has that name.
    public func restart(_ name: String) -> Bool {
        guard let i = entries.withLock({ e -> Int? in
            guard let i = e.firstIndex(where: { $0.spec.name == name }) else { return nil }
            e[i].held = false
            if e[i].status.pid != nil { e[i].restartNow = true }
            return i
        }) else { return false }
        if let pid = entries.withLock({ $0[i].status.pid }) { kill(pid, SIGTERM) } else { supervise(i) }
        return true
    }

    /// An operator's stop: SIGTERM, SIGKILL if it still runs after `grace`; it stays stopped, whatever
    /// its restart policy, until restarted. False if no process has that name.
    public func stop(_ name: String, grace: Duration = .seconds(5)) async -> Bool {
        guard let pid = entries.withLock({ e -> pid_t?? in
            guard let i = e.firstIndex(where: { $0.spec.name == name }) else { return nil }
            e[i].held = true
            e[i].restartNow = false
            return .some(e[i].status.pid)
        }) else { return false }
        guard let pid else { return true }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, entries.withLock({ $0.contains { $0.status.pid == pid } }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if entries.withLock({ $0.contains { $0.status.pid == pid } }) { kill(pid, SIGKILL) }
        return true
    }

    private func loop(_ i: Int) async {
        defer { entries.withLock { $0[i].supervised = false } }
        let spec = entries.withLock { $0[i].spec }
        var backoff = minimumBackoff
        while !stopping.load(ordering: .acquiring) {
            if entries.withLock({ $0[i].held }) { break }
            let started = ContinuousClock.now
            switch spawn(spec, i) {
            case .failure(let why):
                update(i) { $0.state = .failed; $0.error = why.message; $0.pid = nil }
                log("process \(spec.name): cannot start \(spec.path): \(why)")
                return
            case .success(let pid):
                update(i) { $0.state = .running; $0.pid = pid; $0.error = nil }
                let status = await reaper.wait(for: pid)
                let stopped = stopping.load(ordering: .acquiring)
                update(i) { $0.lastExit = status.description; $0.pid = nil }
                let (held, restartNow) = entries.withLock { e in
                    defer { e[i].restartNow = false }
                    return (e[i].held, e[i].restartNow)
                }
                if stopped || held { update(i) { $0.state = .stopped }; return }
                if restartNow {
                    update(i) { $0.state = .restarting; $0.restarts += 1 }
                    log("process \(spec.name) \(status); restarted by an operator")
                    backoff = minimumBackoff
                    continue
                }
                let again = spec.restart == .always || (spec.restart == .onFailure && !status.success)
                guard again else {
                    update(i) { $0.state = status.success ? .exited : .failed }
                    log("process \(spec.name) \(status); restart policy \(spec.restart.rawValue): not restarted")
                    return
                }
                if ContinuousClock.now - started > maximumBackoff { backoff = minimumBackoff }
                update(i) { $0.state = .restarting; $0.restarts += 1 }
                log("process \(spec.name) \(status); restarting in \(backoff)")
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, maximumBackoff)
            }
        }
        update(i) { $0.state = .stopped }
    }

    private func spawn(_ spec: ProcessSpec, _ i: Int) -> Result<pid_t, SpawnError> {
        guard access(spec.path, X_OK) == 0 else { return .failure(SpawnError(message: String(cString: strerror(errno)))) }
        let argv = ([spec.path] + spec.arguments).map { strdup($0) } + [nil]
        let envp = (spec.environment.isEmpty ? ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"] : spec.environment).map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        // Children start with default signal handling and nothing blocked: ignored signals are
        // inherited across exec, and the node ignores SIGTERM/SIGINT to take them as events.
        var attr = SpawnAttributes(newSession: true)
        defer { attr.destroy() }
        // stdout and stderr into pipes of ours when their lines are wanted: each read end to a
        // reader, each write end the child's alone (closed here once it has them).
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipes: [(read: Int32, write: Int32, stream: OutputLine.Stream)] = []
        if output != nil {
            for (target, stream) in [(STDOUT_FILENO, OutputLine.Stream.stdout), (STDERR_FILENO, .stderr)] {
                var fds: [Int32] = [-1, -1]
                guard decos_pipe_cloexec(&fds) == 0 else { continue }
                posix_spawn_file_actions_adddup2(&actions, fds[1], target)
                pipes.append((fds[0], fds[1], stream))
            }
        }
        let spawned = reaper.spawn {
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, spec.path, &actions, &attr.value, argv, envp)
            return rc == 0 ? Result<pid_t, SpawnError>.success(pid) : .failure(SpawnError(message: String(cString: strerror(rc))))
        }
        for p in pipes {
            close(p.write)
            if case .success = spawned, let output {
                OutputReader.start(fd: p.read, process: spec.name, stream: p.stream) { [self] line in
                    update(i) { $0.lastOutput = String(line.line.prefix(512)) }
                    output(line)
                }
            } else {
                close(p.read)
            }
        }
        return spawned
    }

    /// Stops every process: SIGTERM, then SIGKILL to whatever still runs after `grace`.
    public func stopAll(grace: Duration = .seconds(5)) async {
        stopping.store(true, ordering: .releasing)
        let pids = entries.withLock { $0.compactMap(\.status.pid) }
        for pid in pids { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, entries.withLock({ $0.contains { $0.status.pid != nil } }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for pid in entries.withLock({ $0.compactMap(\.status.pid) }) { kill(pid, SIGKILL) }
        for task in entries.withLock({ $0.compactMap(\.task) }) { task.cancel(); await task.value }
    }
}

struct SpawnError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// What a child is spawned with: default handling of every signal and none blocked (ignored
/// signals are inherited across exec, and the node ignores some to take them as events), and,
/// if asked, a session of its own. `destroy` once spawned.
public struct SpawnAttributes {
    public var value = posix_spawnattr_t()

    public init(newSession: Bool) {
        posix_spawnattr_init(&value)
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all); sigemptyset(&none)
        posix_spawnattr_setsigdefault(&value, &all)
        posix_spawnattr_setsigmask(&value, &none)
        posix_spawnattr_setflags(&value, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (newSession ? 0x80 /* POSIX_SPAWN_SETSID */ : 0)))
    }

    public mutating func destroy() { posix_spawnattr_destroy(&value) }
}
