import Synchronization
import Testing
@testable import ProcessKernel
#if canImport(Glibc)
import Glibc
import TestKit
#endif

/// Real child processes (/bin/sh, /bin/sleep) started, restarted and stopped by the supervisor.
@Suite(.bounded) struct SupervisorTests {
    @Test func restartsAFailingProcessOnFailureAndCountsRestarts() async throws {
        let s = Supervisor(minimumBackoff: .milliseconds(10), maximumBackoff: .milliseconds(40))
        s.start(ProcessSpec(name: "flaky", path: "/bin/sh", arguments: ["-c", "exit 3"], restart: .onFailure))
        try await until("three restarts") { s.statuses[0].restarts >= 3 }
        #expect(s.statuses[0].lastExit == "exited with status 3")
        await s.stopAll(grace: .milliseconds(200))
        #expect(s.statuses[0].state == .stopped)
    }

    @Test func aCleanExitIsNotRestartedOnFailure() async throws {
        let s = Supervisor(minimumBackoff: .milliseconds(10))
        s.start(ProcessSpec(name: "once", path: "/bin/sh", arguments: ["-c", "exit 0"], restart: .onFailure))
        try await until("exited") { s.statuses[0].state == .exited }
        #expect(s.statuses[0].restarts == 0)
        #expect(s.statuses[0].lastExit == "exited with status 0")
    }

    @Test func aKilledProcessIsStartedAgainWithANewPid() async throws {
        let s = Supervisor(minimumBackoff: .milliseconds(10))
        s.start(ProcessSpec(name: "sleeper", path: "/bin/sleep", arguments: ["1000"], restart: .always))
        try await until("running") { s.statuses[0].state == .running }
        let first = try #require(s.statuses[0].pid)
        kill(first, SIGKILL)
        try await until("restarted") { s.statuses[0].state == .running && s.statuses[0].pid != first }
        #expect(s.statuses[0].restarts == 1)
        #expect(s.statuses[0].lastExit == "killed by signal 9")
        await s.stopAll(grace: .seconds(2))
        #expect(s.statuses[0].state == .stopped)
        #expect(s.statuses[0].pid == nil)
    }

    @Test func anOperatorStopsAProcessItsPolicyWouldRestartAndRestartsItAgain() async throws {
        let s = Supervisor(minimumBackoff: .milliseconds(10))
        s.start(ProcessSpec(name: "server", path: "/bin/sleep", arguments: ["1000"], restart: .always))
        try await until("running") { s.statuses[0].state == .running }
        let first = try #require(s.statuses[0].pid)
        // Restart while running: a new process at once, counted, not left to the backoff.
        #expect(s.restart("server"))
        try await until("running again") { s.statuses[0].state == .running && s.statuses[0].pid != first }
        #expect(s.statuses[0].restarts == 1 && s.statuses[0].lastExit == "killed by signal 15")
        // Stop: it stays stopped although its policy is `always`.
        #expect(await s.stop("server", grace: .seconds(2)))
        try await until("stopped") { s.statuses[0].state == .stopped }
        #expect(s.statuses[0].pid == nil)
        // Restart of a stopped process starts it.
        #expect(s.restart("server"))
        try await until("started") { s.statuses[0].state == .running }
        #expect(s.restart("nobody") == false)
        #expect(await s.stop("nobody") == false)
        await s.stopAll(grace: .seconds(2))
    }

    @Test func theLastLineAProcessWroteIsInItsStatusAndObserversHearOfChanges() async throws {
        let changes = Mutex(0)
        let s = Supervisor(output: { _ in })
        s.observe { _ in changes.withLock { $0 += 1 } }
        s.start(ProcessSpec(name: "talker", path: "/bin/sh", arguments: ["-c", "echo first >&2; echo second >&2; exit 0"], restart: .never))
        try await until("exited and said its last") { s.statuses[0].state == .exited && s.statuses[0].lastOutput == "second" }
        #expect(changes.withLock { $0 } >= 3)
    }

    @Test func stopAllKillsWhatIgnoresSIGTERM() async throws {
        let s = Supervisor(output: { _ in })  // its output read: the shell says when its trap is in
        s.start(ProcessSpec(name: "stubborn", path: "/bin/sh", arguments: ["-c", "trap '' TERM; echo trapped; while true; do sleep 0.05; done"], restart: .always))
        try await until("the shell has installed its trap") { s.statuses[0].lastOutput == "trapped" }
        await s.stopAll(grace: .milliseconds(300))
        #expect(s.statuses[0].state == .stopped)
        #expect(s.statuses[0].lastExit == "killed by signal 9")
    }

    @Test func outputComesLineByLineWithItsStreamAndLongLinesInPieces() async throws {
        let seen = Mutex<[OutputLine]>([])
        let s = Supervisor(output: { line in seen.withLock { $0.append(line) } })
        // 5000 x's with no newline, then the end of the process: two pieces, the last at exit.
        s.start(ProcessSpec(name: "talker", path: "/bin/sh",
                            arguments: ["-c", "echo out one; echo err one >&2; echo out two; printf '%5000s' '' | tr ' ' x"], restart: .never))
        try await until("every line, the unterminated last one at exit") {
            seen.withLock { $0.filter { $0.stream == .stdout }.count } == 4 && s.statuses[0].state == .exited
        }
        let lines = seen.withLock { $0 }
        #expect(lines.filter { $0.stream == .stdout }.map(\.line) == ["out one", "out two", String(repeating: "x", count: 4096), String(repeating: "x", count: 904)])
        #expect(lines.filter { $0.stream == .stderr } == [OutputLine(process: "talker", stream: .stderr, line: "err one")])
    }

    @Test func aMissingProgramIsAFailureWithItsReason() async throws {
        let s = Supervisor()
        s.start(ProcessSpec(name: "ghost", path: "/no/such/program"))
        try await until("failed") { s.statuses[0].state == .failed }
        #expect(s.statuses[0].error == "No such file or directory")
    }
}
