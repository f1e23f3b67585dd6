import CDecosInit
import DistributingKernel
import NIOCore
import NIOPosix
import Synchronization

/// Where a node's tasks run.
public enum Executors {
    private typealias EnqueueHook = @convention(thin) (UnownedJob, @convention(thin) (UnownedJob) -> Void) -> Void

    /// Runs every task on SwiftNIO's event loops instead of Swift's own thread pool, so a message
    /// read from a connection is handled, answered and written on the thread that read it: no hop
    /// between the pool and a loop (four of them per remote call, each a thread wake-up). A task
    /// started on a loop stays on it. Failure detection has its own thread (`MembershipDatagrams`),
    /// so a long computation on a loop delays that loop's work but cannot get its node declared
    /// dead. Call once, first thing in `main`; false if another hook was already installed.
    @discardableResult
    public static func runTasksOnEventLoops() -> Bool {
        _ = queues
        return withUnsafeTemporaryAllocation(of: EnqueueHook.self, capacity: 1) { hook in
            hook.baseAddress!.initialize(to: { job, _ in
                // `any()` is the current loop when called on one of the group's loops.
                Executors.queue(for: MultiThreadedEventLoopGroup.singleton.any()).enqueue(job)
            })
            let installed = hook.baseAddress!.withMemoryRebound(to: UnsafeRawPointer.self, capacity: 1) {
                decos_install_enqueue_global_hook($0.pointee) == 1
            }
            if installed { NetworkManager.tasksRunInOrder.store(true, ordering: .relaxed) }
            return installed
        }
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
