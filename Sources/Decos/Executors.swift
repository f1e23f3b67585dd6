import CDecosInit
import NIOCore
import NIOPosix

/// Where a node's tasks run.
public enum Executors {
    private typealias EnqueueHook = @convention(thin) (UnownedJob, @convention(thin) (UnownedJob) -> Void) -> Void

    /// Runs every task on SwiftNIO's event loops instead of Swift's own thread pool, so a message
    /// read from a connection is handled, answered and written on the thread that read it: no hop
    /// between the pool and a loop (four of them per remote call, each a thread wake-up). A task
    /// started on a loop stays on it. Failure detection has its own thread (`FailureDetector`),
    /// so a long computation on a loop delays that loop's work but cannot get its node declared
    /// dead. Call once, first thing in `main`; false if another hook was already installed.
    @discardableResult
    public static func runTasksOnEventLoops() -> Bool {
        withUnsafeTemporaryAllocation(of: EnqueueHook.self, capacity: 1) { hook in
            hook.baseAddress!.initialize(to: { job, _ in
                // `any()` is the current loop when called on one of the group's loops. The job runs
                // on the generic executor, as on Swift's pool, so that calls into actors and back
                // switch on this thread instead of each going through the loop's queue again.
                let job = unsafeBitCast(job, to: UnsafeMutableRawPointer.self)
                MultiThreadedEventLoopGroup.singleton.any().execute { decos_run_job_on_generic_executor(job) }
            })
            return hook.baseAddress!.withMemoryRebound(to: UnsafeRawPointer.self, capacity: 1) {
                decos_install_enqueue_global_hook($0.pointee) == 1
            }
        }
    }
}
