import Foundation
import Testing
import TestKit

/// The suites here block (on processes, pipes, waits): each runs its tests on threads of its own,
/// so the in-process nodes of the other tests keep Swift's concurrency pool (TestKit/OwnThreads).
@Suite(.bounded, .ownThreads) struct OwnThreadsTests {
    @Test func aBlockingTestRunsOnAThreadOfItsOwn() {
        #expect(ThreadPerJob.isCurrent)
    }

    @Test func anAsyncOneComesBackToOneAfterAnAwait() async throws {
        #expect(ThreadPerJob.isCurrent)
        try await Task.sleep(for: .milliseconds(1))
        #expect(ThreadPerJob.isCurrent)
    }
}
