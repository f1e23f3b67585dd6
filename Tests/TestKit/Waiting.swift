import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The one way the tests wait for a condition nothing announces: look, sleep a little, look again,
/// and fail at the caller's line once a deadline passes. Never a bare sleep (it passes or fails by
/// luck), never a loop of bare yields (it keeps one of the test process's two threads from the
/// tasks it waits for), never an unbounded wait (it hangs CI instead of failing). Where there is an
/// event to wait on (a directory change, a signal), wait on it instead.

/// What a wait that ran out of time throws.
public struct WaitFailure: Error, CustomStringConvertible {
    public let description: String
}

/// Waits until `condition` holds, looking every `every`; past `within`, records an issue at the
/// caller's line naming `what`, and throws.
public func until(_ what: String, within: Duration = .seconds(60), every: Duration = .milliseconds(10),
                  sourceLocation: SourceLocation = #_sourceLocation,
                  _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + within
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            let failure = WaitFailure(description: "\(what): not within \(within)")
            Issue.record("\(failure)", sourceLocation: sourceLocation)
            throw failure
        }
        try await Task.sleep(for: every)
    }
}

/// The same for a test that runs synchronously (one driving processes): blocks its thread while
/// it waits. Returns the seconds it waited.
@discardableResult
public func waitFor(_ what: String, within seconds: Double, every: Duration = .milliseconds(100),
                    sourceLocation: SourceLocation = #_sourceLocation,
                    _ condition: () throws -> Bool) throws -> Double {
    let start = ContinuousClock.now
    let pause = UInt32(every.components.seconds * 1_000_000 + every.components.attoseconds / 1_000_000_000_000)
    while try !condition() {
        guard ContinuousClock.now - start <= .seconds(seconds) else {
            let failure = WaitFailure(description: "\(what): not within \(seconds) s")
            Issue.record("\(failure)", sourceLocation: sourceLocation)
            throw failure
        }
        usleep(pause)
    }
    let waited = (ContinuousClock.now - start).components
    return Double(waited.seconds) + Double(waited.attoseconds) / 1e18
}
