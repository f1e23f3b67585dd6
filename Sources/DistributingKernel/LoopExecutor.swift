import NIOCore
import Synchronization

/// An event loop as a task executor: a task that prefers it runs its jobs on that loop, first in,
/// first out, so tasks made one after another start in that order (remote requests reach their
/// service in the order they arrived). One per loop, made once.
public final class LoopExecutor: TaskExecutor {
    let loop: any EventLoop
    private init(_ loop: any EventLoop) { self.loop = loop }

    /// Set when every task of the process runs on the event loops (the node binary's executor,
    /// Executors.swift, which batches each loop's jobs): tasks made on a loop then start in order
    /// already, and preferring a loop would only cost a loop task per job.
    public static let everyTaskRunsOnLoops = Atomic<Bool>(false)

    /// Where a task that must start after the ones made before it on `loop` should run: anywhere
    /// (nil) when every task runs on the loops, else on the loop itself.
    static func ordered(on loop: any EventLoop) -> LoopExecutor? {
        everyTaskRunsOnLoops.load(ordering: .relaxed) ? nil : of(loop)
    }

    private static let all = Mutex<[ObjectIdentifier: LoopExecutor]>([:])

    static func of(_ loop: any EventLoop) -> LoopExecutor {
        all.withLock { all in
            if let e = all[ObjectIdentifier(loop)] { return e }
            let e = LoopExecutor(loop)
            all[ObjectIdentifier(loop)] = e
            return e
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
