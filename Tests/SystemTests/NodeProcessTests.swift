import Foundation
import Testing
import TestKit

let soapHeader = "Content-Type: application/soap+xml"

func envelope(_ verb: String, _ body: String = "") -> String {
    """
    <env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
    <env:Header><wsa:Action>urn:decos:verb:\(verb)</wsa:Action><wsa:MessageID>urn:uuid:7</wsa:MessageID></env:Header>
    <env:Body>\(body)</env:Body></env:Envelope>
    """
}

/// The CPUs this process may run on (`Cpus_allowed_list` in /proc/self/status: "0-3,6").
let allowedCPUs: [String] = {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return [] }
    return line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",").flatMap { range -> [String] in
        let ends = range.split(separator: "-").compactMap { Int($0) }
        guard let first = ends.first else { return [] }
        return (first...(ends.last ?? first)).map(String.init)
    }
}()

@Suite(.bounded, .ownThreads, .serialized) struct NodeProcessTests {
    @Test func servesTheExampleManifestToRealClients() throws {
        let node = try NodeProcess()
        let page = try curl(node.base + "/")
        #expect(page.out.contains("data-path=\"/@example/counter\""))
        #expect(page.out.contains("data-path=\"/@example/kv\""))
        let post = try curl("-X", "POST", "-H", soapHeader, "--data-binary", envelope("Update", "<Increment><By>2</By></Increment>"), node.base + "/counter")
        #expect(post.out.contains("<Value>2</Value>"))
        #expect(post.out.contains("<wsa:RelatesTo>urn:uuid:7</wsa:RelatesTo>"))
        let ctl = try decos("ctl", "update", node.base + "/counter", "--body", "<Increment><By>3</By></Increment>")
        #expect(ctl.status == 0)
        #expect(ctl.out.contains("<Value>5</Value>"))
        let state = try curl(node.base + "/counter")
        #expect(state.out.contains("<CounterState><Value>5</Value></CounterState>"))
        let echo = try decos("ctl", "submit", node.base + "/echo", "--body", "<Ping>1</Ping>")
        #expect(echo.out == "<Ping>1</Ping>\n")
        let (status, rest) = node.terminate()
        #expect(status == 0)
        #expect(rest.contains("stopped"))
        // Its tasks ran on the event loops: the scheduler hook's self-test passed.
        #expect(!node.standardError().contains("tasks run on Swift's own pool"))
    }

    @Test(.enabled(if: allowedCPUs.count > 1, "pinning to one core changes nothing where the tests have one"))
    func aNodePinnedToOneCoreRunsOneEventLoopThere() throws {
        // SwiftNIO counts the machine's cores: two loops on the one core would hand messages to
        // each other through a context switch.
        let node = try NodeProcess(wrapper: ["/usr/bin/taskset", "-c", allowedCPUs[0]])
        let pid = node.process.processIdentifier
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").map { tid in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8)) ?? ""
        }
        // By name: a thread started from a loop's thread takes that loop's name too.
        let loops = Set(names.filter { $0.hasPrefix("NIO-SGLTN-") })
        #expect(loops.count == 1, "the node's threads: \(names.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })")
        #expect(try curl(node.base + "/counter").out.contains("<CounterState>"))
    }

    @Test func badInputGetsFaultsAndTheNodeKeepsServing() throws {
        let node = try NodeProcess()
        func stillServes() throws -> Bool { try curl(node.base + "/counter").out.contains("<CounterState>") }
        let cases: [(String, String, String)] = [
            ("/counter", "<oops", "malformed XML"),
            ("/counter", "<NotSoap/>", "NotSOAP"),
            ("/counter", #"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#, "DOCTYPE"),
            ("/counter", "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]><l>&b;</l>", "DOCTYPE"),
            ("/counter", envelope("Fly"), "ActionNotSupported"),
            ("/nowhere", envelope("Get"), "UnknownService"),
            ("/counter", envelope("Update", "<Decrement/>"), "InvalidBody"),
            ("/counter", envelope("Update", "<Increment><By>lots</By></Increment>"), "not a valid Int"),
        ]
        for (path, body, expected) in cases {
            let r = try curl("-X", "POST", "-H", soapHeader, "--data-binary", body, "-w", "\n%{http_code}", node.base + path)
            #expect(r.out.hasSuffix("\n400"), "\(body)")
            #expect(r.out.contains(expected), "\(body): \(r.out)")
            #expect(try stillServes())
        }
        let huge = NSTemporaryDirectory() + "decos-huge-\(UUID().uuidString).xml"
        try envelope("Submit", "<B>\(String(repeating: "x", count: 2 << 20))</B>").write(toFile: huge, atomically: true, encoding: .utf8)
        let big = try curl("-X", "POST", "-H", soapHeader, "--data-binary", "@" + huge, "-o", "/dev/null", "-w", "%{http_code}", node.base + "/echo")
        #expect(big.out == "413")
        #expect(try stillServes())
    }

    @Test func slowDroppedAndKeptAliveConnections() throws {
        let manifest = NSTemporaryDirectory() + "decos-idle-\(UUID().uuidString).xml"
        try String(contentsOf: packageRoot.appendingPathComponent("examples/node.xml"), encoding: .utf8)
            .replacingOccurrences(of: "requestTimeout=\"30\"", with: "requestTimeout=\"30\" idleTimeout=\"2\"")
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let node = try NodeProcess(manifest: manifest)
        // Keep-alive: two requests, two responses, one connection.
        let keep = try RawConnection(port: node.port)
        keep.send("GET /counter HTTP/1.1\r\nHost: localhost\r\n\r\nGET /kv HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let both = keep.read { $0.contains("</KVState>") }
        #expect(both?.components(separatedBy: "HTTP/1.1 200 OK").count == 3)
        // A client that vanishes mid-request.
        let dropped = try RawConnection(port: node.port)
        dropped.send("POST /counter HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/soap+xml\r\nContent-Length: 5000\r\n\r\n<env:Env")
        _ = consume dropped
        // A client that stops halfway through its headers is cut off once idle (idleTimeout, 2 s
        // here), while others are served meanwhile.
        let slow = try RawConnection(port: node.port)
        slow.send("GET /counter HTTP/1.1\r\nHost: localhost\r\n")
        #expect(try curl(node.base + "/counter").out.contains("<CounterState>"))
        #expect(slow.waitForClose())
        #expect(try curl(node.base + "/counter").out.contains("<CounterState>"))
    }

    @Test func ctlReportsFaultsAndUsageErrors() throws {
        let node = try NodeProcess()
        let fault = try decos("ctl", "get", node.base + "/missing")
        #expect(fault.status == 1)
        #expect(fault.err.contains("UnknownService"))
        let verb = try decos("ctl", "fly", node.base + "/counter")
        #expect(verb.status != 0 && verb.err.contains("unknown verb fly"))
        let body = try decos("ctl", "update", node.base + "/counter", "--body", "<Increment><By>")
        #expect(body.status == 2 && body.err.contains("--body:1:"))
        let refused = try decos("ctl", "get", "http://127.0.0.1:1/counter")
        #expect(refused.status == 2 && refused.err.contains("cannot connect"))
    }

    @Test func subscribeFromTheCommandLine() throws {
        let node = try NodeProcess()
        let sub = Process()
        sub.executableURL = URL(fileURLWithPath: decosBinary)
        sub.arguments = ["ctl", "subscribe", node.base + "/counter"]
        let out = Pipe()
        sub.standardOutput = out
        try sub.run()
        var seen = ""
        while !seen.contains("subscribed to") { seen += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) }
        try decos("ctl", "update", node.base + "/counter", "--body", "<Increment><By>9</By></Increment>")
        while !seen.contains("<By>9</By>") { seen += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) }
        #expect(seen.contains("Update from decos://example/counter"))
        sub.terminate()
        sub.waitUntilExit()
    }

    @Test func poweroffEndsAHostedNodeInOrder() throws {
        let node = try NodeProcess(extra: ["--node", "p1"])
        // Powering off needs the operator token even on loopback: `decos run` made one in a file
        // only its user may read, and `decos ctl` sends it to this node by default.
        let path = try #require(node.lines.first { $0.hasPrefix("decos: operator token in ") }?.split(separator: " ")[4])
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: String(path))[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        let anonymous = try decos("ctl", "poweroff", node.base, "--anonymous")
        #expect(anonymous.status != 0 && (anonymous.out + anonymous.err).contains("operator token"), "\(anonymous)")
        #expect(try curl("-H", soapHeader, "--data-binary", envelope("Submit", "<Poweroff/>"), node.base + "/os/node").out.contains("Denied"))
        #expect(node.process.isRunning)
        let off = try decos("ctl", "poweroff", node.base)
        #expect(off.out.contains("<Action>poweroff</Action>"))
        node.process.waitUntilExit()
        #expect(node.process.terminationStatus == 0)
        #expect(node.process.terminationReason == .exit)
        // The token goes with the node.
        #expect(!FileManager.default.fileExists(atPath: String(path)))
    }

    @Test func aKilledNodesTokenIsNotSentToWhatListensOnItsPortNext() throws {
        // A node killed with SIGKILL leaves its token file. Whatever listens on that port next
        // (here a node with a token of its own; in VMTests a VM's forwarded port) must not be sent
        // the dead one's token: the file is sent only while its node holds it under a lock.
        let first = try NodeProcess()
        let port = first.port
        let stale = try #require(first.lines.first { $0.hasPrefix("decos: operator token in ") }?.split(separator: " ")[4])
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: String(stale)))
        let own = FileManager.default.temporaryDirectory.appendingPathComponent("decos-own-token-\(getpid())").path
        #expect(FileManager.default.createFile(atPath: own, contents: Data("own-operator-token-0123456789".utf8), attributes: [.posixPermissions: 0o600]))
        defer { try? FileManager.default.removeItem(atPath: own) }
        let second = try NodeProcess(extra: ["--operator-token", own], http: "127.0.0.1:\(port)")
        let refused = try decos("ctl", "poweroff", second.base)
        #expect(refused.status != 0)
        #expect(refused.err.contains("Denied") && !refused.err.contains("unknown bearer token"), "\(refused.err)")
        #expect(second.process.isRunning)
    }

    @Test func rebootRestartsAHostedNodeInPlace() throws {
        let node = try NodeProcess()
        try decos("ctl", "update", node.base + "/counter", "--body", "<Increment><By>3</By></Increment>")
        #expect(try decos("ctl", "reboot", node.base).out.contains("<Action>reboot</Action>"))
        var seen = ""
        while seen.components(separatedBy: "ready with").count < 2 {
            let chunk = node.output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        #expect(seen.contains("decos: restarting"))
        #expect(node.process.isRunning)
        // The same process, started afresh (on a new free port: the command line says port 0);
        // its state comes from the manifest again.
        let r = try #require(seen.range(of: #"serving http://127\.0\.0\.1:\d+/"#, options: .regularExpression))
        #expect(try decos("ctl", "get", String(seen[r].dropFirst(8)) + "counter").out.contains("<Value>0</Value>"))
        _ = node.terminate()
    }

    @Test func aCrashRequestTrapsAHostedNode() throws {
        // Hosted, nothing restarts the process: a trap ends it (as PID 1, init starts it again:
        // the VM test checks that).
        let node = try NodeProcess()
        #expect(try decos("ctl", "submit", node.base + "/os/node", "--body", "<Crash/>").out.contains("CrashResponse"))
        node.process.waitUntilExit()
        #expect(node.process.terminationReason == .uncaughtSignal)
    }
}

@Suite(.bounded, .ownThreads) struct ManifestCommandTests {
    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "decos-\(UUID().uuidString).xml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func checkAcceptsTheExample() throws {
        let r = try decos("manifest", "check", "examples/node.xml")
        #expect(r.status == 0)
        #expect(r.out.contains("ok (node example, 3 services, gateway on 127.0.0.1:7480)"))
    }

    /// A durable service without <Storage> is an error, unless checked as run with --data (as
    /// boot/mkimage.sh checks an appliance's manifest: its data disk is /data).
    @Test func checkWithDataAcceptsDurableServicesWithoutStorage() throws {
        let plain = try decos("manifest", "check", "Tests/SystemTests/Fixtures/appliance-durable.xml")
        #expect(plain.status == 1 && plain.err.contains("/counter is durable, but the node has no storage"), "\(plain.err)")
        let withData = try decos("manifest", "check", "--data", "/data", "Tests/SystemTests/Fixtures/appliance-durable.xml")
        #expect(withData.status == 0 && withData.out.contains("ok (node keeper, 2 services"), "\(withData.out)\(withData.err)")
    }

    @Test func checkReportsFileLineAndColumn() throws {
        let path = try write("<Manifest xmlns=\"urn:decos:manifest\">\n  <Service contract=\"urn:decos:examples:nope\" name=\"/x\"/>\n  <Servce/>\n</Manifest>\n")
        let r = try decos("manifest", "check", path)
        #expect(r.status == 1)
        #expect(r.err.contains("\(path):3:3: error: unknown element <Servce>"))
        let unknown = try decos("manifest", "check", try write("<Manifest xmlns=\"urn:decos:manifest\">\n  <Service contract=\"urn:decos:examples:nope\"/>\n</Manifest>"))
        #expect(unknown.err.contains(":2:3: error: no service implements contract urn:decos:examples:nope"))
    }

    @Test func runRefusesABadManifestWithAClearMessage() throws {
        let path = try write("<Manifest xmlns=\"urn:decos:manifest\">\n  <Service contract=\"urn:decos:examples:counter\" name=\"/c\">\n</Manifest>")
        let r = try decos("run", path, "--http", "127.0.0.1:0")
        #expect(r.status != 0)
        #expect(r.err.contains("\(path):3:"))
        let missing = try decos("run", "/nonexistent/manifest.xml")
        #expect(missing.status != 0 && missing.err.contains("/nonexistent/manifest.xml"))
    }

    @Test func runReportsABusyPort() throws {
        let first = try NodeProcess()
        let r = try decos("run", "examples/node.xml", "--http", "127.0.0.1:\(first.port)")
        #expect(r.status != 0)
        #expect(r.err.contains("cannot listen on 127.0.0.1:\(first.port)"))
    }

    @Test func versionIsPrinted() throws {
        #expect(try decos("--version").out.hasPrefix("decos "))
    }
}

@Suite(.bounded, .ownThreads) struct ServiceAuthorExampleTests {
    @Test func aServiceWrittenOutsideTheKernelRunsFromItsManifest() throws {
        let node = try NodeProcess(manifest: "examples/greeter.xml", binary: greeterBinary)
        let greeting = try run(greeterBinary, ["ctl", "submit", node.base + "/greeter", "--body", "<Greet><Name>Ada</Name></Greet>"])
        #expect(greeting.status == 0)
        #expect(greeting.out.contains("<Text>Welcome, Ada!</Text>"))
        #expect(try curl(node.base + "/guests").out.contains("<Key>Ada</Key>"))
        #expect(try curl(node.base + "/greeter").out.contains("<Greeted>1</Greeted>"))
        let check = try run(greeterBinary, ["manifest", "check", "examples/greeter.xml"])
        #expect(check.status == 0)
        // The plain decos binary does not know the contract, and says so.
        let plain = try decos("manifest", "check", "examples/greeter.xml")
        #expect(plain.status == 1 && plain.err.contains("urn:example:greeter"))
    }
}
