import Foundation

/// Runs a program to completion: its status, standard output and standard error. Both pipes are
/// read as they fill (a program that fills one while the other is read would wait forever), and a
/// program's children (a browser's) that hold them after it ended are waited for 10 s at most.
@discardableResult
public func runProgram(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                       directory: URL? = nil) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let directory { p.currentDirectoryURL = directory }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let (o, e) = (Drained(), Drained())
    o.drain(out.fileHandleForReading)
    e.drain(err.fileHandleForReading)
    p.waitUntilExit()
    return (p.terminationStatus, o.all(), e.all())
}

/// A pipe read to its end on a thread of its own, so a writer never blocks on a full pipe.
public final class Drained: @unchecked Sendable {
    // Unchecked: `text` is only touched under `lock`.
    private var text = Data()
    private let lock = NSLock()
    private let ended = DispatchSemaphore(value: 0)

    public init() {}

    public func drain(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while case let chunk = handle.availableData, !chunk.isEmpty { lock.withLock { text += chunk } }
            ended.signal()
        }
    }

    /// Everything, once every writer has closed its end; what came within `seconds` if one has
    /// not (a program's children may outlive it and hold the pipe).
    public func all(within seconds: Double = 10) -> String {
        if ended.wait(timeout: .now() + seconds) == .success { ended.signal() }
        return lock.withLock { String(decoding: text, as: UTF8.self) }
    }
}

