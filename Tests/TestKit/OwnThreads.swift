import Foundation
import Testing

/// Tests that block — that drive processes, read their pipes, sleep while they wait — run on
/// threads of their own (`@Suite(.ownThreads)`), never on Swift's concurrency pool. The pool has
/// one thread a core (two here) and also runs the in-process nodes of the tests beside them: two
/// blocked threads stall every one of those nodes, whose clients then miss the gateway's
/// deadlines (CI saw "I/O on closed channel" after a client's head waited 30 s for a thread).
/// Tests that compute instead share one thread (`ComputeThread`, below).
/// Unlike handing the work to a dispatch queue, the test's task goes on, so what it records is
/// still its own.
public struct OwnThreads: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(ThreadPerJob.shared) { try await function() }
    }
}

extension Trait where Self == OwnThreads {
    /// Runs each of the tests on threads of its own: see `OwnThreads`.
    public static var ownThreads: Self { OwnThreads() }
}

/// A task executor that runs each job on a new thread: a test's job may block for minutes, and
/// threads made per job never wait for each other. Jobs are few (a blocking test seldom awaits),
/// so a thread's cost (tens of microseconds) does not matter.
public final class ThreadPerJob: TaskExecutor, Sendable {
    public static let shared = ThreadPerJob()
    private static let mark = "decos.ThreadPerJob"

    /// Whether the caller runs on one of its threads (a thread's name cannot tell: on Linux a
    /// `Thread` keeps the name of the thread that made it).
    public static var isCurrent: Bool { Thread.current.threadDictionary[mark] != nil }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        Thread.detachNewThread {
            Thread.current.threadDictionary[Self.mark] = true
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}

/// Tests that compute for seconds without a pause (the cluster simulations, readers fed a byte at a
/// time) share one thread of their own (`@Suite(.computeThread)`): off Swift's pool, where two of
/// them stalled every in-process node of the tests beside them for up to 14.5 s, and together
/// never more than one core, so the failure detectors of in-process clusters still get the other
/// (a thread each for seven such suites starved them into false deaths).
public struct ComputeThread: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard testCase != nil else { return try await function() }
        try await withTaskExecutorPreference(OneThread.compute) { try await function() }
    }
}

extension Trait where Self == ComputeThread {
    /// Runs the tests on the one thread tests that compute share: see `ComputeThread`.
    public static var computeThread: Self { ComputeThread() }
}

/// A task executor that runs its jobs one at a time on a thread of its own (a serial dispatch
/// queue, not Swift's pool): what is given to it takes one core at most.
public final class OneThread: TaskExecutor, Sendable {
    public static let compute = OneThread(label: "decos.tests.compute")
    private let queue: DispatchQueue

    init(label: String) { queue = DispatchQueue(label: label) }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
