import Foundation
import Testing
import TestKit

/// The package's root, from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The decos binary under test: $DECOS_BIN, or the debug build.
let decosBinary: String = ProcessInfo.processInfo.environment["DECOS_BIN"]
    ?? packageRoot.appendingPathComponent(".build/debug/decos").path

/// The service-author example binary, built beside decos.
let greeterBinary = URL(fileURLWithPath: decosBinary).deletingLastPathComponent().appendingPathComponent("decos-greeter").path

/// A `decos run` process on a free loopback port.
final class NodeProcess: @unchecked Sendable {
    let process = Process()
    let output = Pipe()
    let errors = Pipe()
    var port = 0
    /// `https` when the gateway serves TLS.
    var scheme = "http"
    var base: String { "\(scheme)://127.0.0.1:\(port)" }
    private(set) var lines: [String] = []
    /// What the node writes to standard error, read as it comes: a node whose log fills its pipe
    /// blocks on its next line, and then answers nothing, not even SIGTERM.
    private let errorText = Drained()

    /// The operator token `decos run` made and wrote to the file it names when it starts.
    func operatorToken() throws -> String {
        guard let line = lines.first(where: { $0.hasPrefix("decos: operator token in ") }),
              let path = line.dropFirst("decos: operator token in ".count).split(separator: " ").first else {
            throw Failure("the node did not say where its operator token is: \(lines)")
        }
        return try String(contentsOfFile: String(path), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `wrapper` runs the node under another program, e.g. `ip netns exec NS`.
    init(manifest: String = "examples/node.xml", extra: [String] = [], binary: String = decosBinary, wrapper: [String] = [],
         http: String = "127.0.0.1:0") throws {
        let command = wrapper + [binary, "run", manifest, "--http", http] + extra
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = packageRoot
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        errorText.drain(errors.fileHandleForReading)
        // The node prints one line when ready; read until it does (or the process ends).
        let handle = output.fileHandleForReading
        var buffer = Data()
        while port == 0 {
            let chunk = handle.availableData
            if chunk.isEmpty { throw Failure("decos run exited before ready: \(errorText.all())") }
            buffer += chunk
            let text = String(decoding: buffer, as: UTF8.self)
            if let r = text.range(of: #"serving https?://[0-9.]+:(\d+)/"#, options: .regularExpression) {
                port = Int(text[r].split(separator: ":").last!.dropLast())!
                scheme = text[r].contains("https:") ? "https" : "http"
                lines = text.split(separator: "\n").map(String.init)
            }
        }
    }

    /// Sends SIGTERM and returns the exit status and what it printed after.
    func terminate() -> (Int32, String) {
        process.terminate()
        let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, rest)
    }

    /// What it wrote to standard error, once it has ended.
    func standardError() -> String { errorText.all() }

    deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a program to completion in the package's root (TestKit's `runProgram`).
@discardableResult
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    try runProgram(executable, arguments, environment: environment, directory: packageRoot)
}

func decos(_ args: String...) throws -> (status: Int32, out: String, err: String) { try run(decosBinary, args) }

func curl(_ args: String...) throws -> (status: Int32, out: String, err: String) { try run("/usr/bin/curl", ["-sS"] + args) }

/// A port free on 127.0.0.1 for a server a test starts (SOCK_DGRAM or SOCK_STREAM): bound by us
/// to learn it, then closed and handed over.
func freeLoopbackPort(_ type: __socket_type) -> Int {
    let probe = socket(AF_INET, Int32(type.rawValue), 0)
    defer { close(probe) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, length) == 0 && getsockname(probe, $0, &length) == 0 } }
    return Int(UInt16(bigEndian: a.sin_port))
}
