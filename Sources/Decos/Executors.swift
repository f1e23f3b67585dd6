import CDecosInit
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import DistributingKernel
import NIOCore
import NIOPosix
import Synchronization

/// Where a node's tasks run.
public enum Executors {
    /// Makes SwiftNIO's loops one per core this process may run on, and returns how many. SwiftNIO
    /// counts the machine's cores (or its cgroup's), not the process's CPU affinity: a node pinned
    /// to one core (taskset, systemd's `CPUAffinity=`) would run a loop per core of the machine on
    /// that one, and each message passed from one loop to another would cost a wake-up and a
    /// context switch there (measured: a remote call's p50 on one core 15-25% lower with one loop
    /// than with two; docs/performance.md).
    /// `NIO_SINGLETON_GROUP_LOOP_COUNT` still decides when set. Call first thing in `main`, before
    /// anything touches the loops: SwiftNIO takes the number once, and traps if it is set twice,
    /// so a second call changes nothing.
    @discardableResult
    public static func fitLoopsToCPUs() -> Int {
        guard !loopsFitted.exchange(true, ordering: .relaxed), getenv("NIO_SINGLETON_GROUP_LOOP_COUNT") == nil else {
            return NIOSingletons.groupLoopCountSuggestion
        }
        let allowed = Int(decos_cpus_allowed())
        guard allowed > 0, allowed < System.coreCount else { return NIOSingletons.groupLoopCountSuggestion }
        NIOSingletons.groupLoopCountSuggestion = allowed
        return allowed
    }
    private static let loopsFitted = Atomic<Bool>(false)

    private typealias EnqueueHook = @convention(thin) (UnownedJob, @convention(thin) (UnownedJob) -> Void) -> Void

    /// Runs every task on SwiftNIO's event loops instead of Swift's own thread pool, so a message
    /// read from a connection is handled, answered and written on the thread that read it: no hop
    /// between the pool and a loop (four of them per remote call, each a thread wake-up). A task
    /// started on a loop stays on it. Failure detection has its own thread (`MembershipDatagrams`),
    /// so a long computation on a loop delays that loop's work but cannot get its node declared
    /// dead. Call once in `main`, right after `fitLoopsToCPUs`. Returns nil when tasks run on the loops, else why
    /// they run on Swift's own pool: another hook was installed, this compiler is one the hook was
    /// not verified with, or the self-test found a task that did not land on a loop.
    @discardableResult
    public static func runTasksOnEventLoops() -> String? {
        // The hook's type and `swift_job_run`'s are declared by hand from the runtime's headers
        // (Sources/CDecosInit): a toolchain that changes them must be checked before it is used.
        #if compiler(>=6.0) && compiler(<6.4)
        // SwiftNIO's public take-over (`DECOS_EXECUTOR=nio`), kept to measure against on each
        // toolchain: each job runs as a loop task of its own, on the loop's executor. Measured
        // 2026-12-07 (docs/performance.md): a third of this hook's pipelined remote calls, and
        // the same local dispatch, so the hook stays.
        if let chosen = getenv("DECOS_EXECUTOR"), String(cString: chosen) == "nio" {
            guard NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() else { return "SwiftNIO's executor take-over failed" }
            // Its hook cannot be taken out again; a failed self-test leaves request lanes waiting
            // for each request's place on its actor, as on Swift's own pool.
            guard tasksLandOnLoops() else { return "a task started after SwiftNIO's take-over did not run on an event loop" }
            NetworkManager.tasksRunInOrder.store(true, ordering: .relaxed)
            return nil
        }
        _ = queues
        let installed = withUnsafeTemporaryAllocation(of: EnqueueHook.self, capacity: 1) { hook -> UnsafeRawPointer? in
            hook.baseAddress!.initialize(to: { job, _ in
                // `any()` is the current loop when called on one of the group's loops.
                Executors.queue(for: MultiThreadedEventLoopGroup.singleton.any()).enqueue(job)
            })
            return hook.baseAddress!.withMemoryRebound(to: UnsafeRawPointer.self, capacity: 1) {
                decos_install_enqueue_global_hook($0.pointee) == 1 ? $0.pointee : nil
            }
        }
        guard let installed else { return "another scheduler hook is installed" }
        guard tasksLandOnLoops() else {
            decos_remove_enqueue_global_hook(installed)
            return "a task started after the hook was installed did not run on an event loop"
        }
        NetworkManager.tasksRunInOrder.store(true, ordering: .relaxed)
        return nil
        #else
        return "the scheduler hook is verified for Swift 6.0 to 6.3 only (Sources/Decos/Executors.swift)"
        #endif
    }

    /// Starts a task and waits (at most 5 s) to see it run on one of the group's loops.
    private static func tasksLandOnLoops() -> Bool {
        final class Landing: Sendable { let onLoop = Atomic<Bool>(false) }
        let landing = Landing()
        let ran = DispatchSemaphore(value: 0)
        Task.detached {
            landing.onLoop.store(MultiThreadedEventLoopGroup.currentEventLoop != nil, ordering: .relaxed)
            ran.signal()
        }
        return ran.wait(timeout: .now() + 5) == .success && landing.onLoop.load(ordering: .relaxed)
    }

    /// One job queue per loop of the group.
    private static let queues: [JobQueue] = MultiThreadedEventLoopGroup.singleton.makeIterator().map(JobQueue.init)

    private static func queue(for loop: any EventLoop) -> JobQueue {
        queues.first { $0.loop === loop } ?? queues[0]
    }
}

/// The task jobs waiting for one event loop. Jobs that arrive together run as one of the loop's
/// tasks (the replies one read wakes up, say), not one loop task each. They run on the generic
/// executor, as on Swift's pool: a job run as the loop's own serial executor could never switch
/// into an actor or back on its thread, so every such switch would go through the loop again.
final class JobQueue: Sendable {
    let loop: any EventLoop
    /// Jobs waiting, whether a run is scheduled, and an emptied array kept for its capacity.
    private let jobs = Mutex<(waiting: [UnownedJob], scheduled: Bool, spare: [UnownedJob])>(([], false, []))

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: UnownedJob) {
        let schedule = jobs.withLock { j -> Bool in
            j.waiting.append(job)
            defer { j.scheduled = true }
            return !j.scheduled
        }
        if schedule { loop.execute { self.run() } }
    }

    /// Runs the jobs waiting now; jobs they enqueue wait for the next run, after the loop's I/O.
    private func run() {
        var batch = jobs.withLock { j -> [UnownedJob] in
            j.scheduled = false
            var taken: [UnownedJob] = []
            swap(&taken, &j.spare)
            swap(&taken, &j.waiting)
            return taken
        }
        for job in batch { decos_run_job_on_generic_executor(unsafeBitCast(job, to: UnsafeMutableRawPointer.self)) }
        batch.removeAll(keepingCapacity: true)
        jobs.withLock { $0.spare = batch }
    }
}
