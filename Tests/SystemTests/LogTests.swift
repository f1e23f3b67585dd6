import Foundation
import Synchronization
import Testing
import TestKit

let canRunRsyslog = FileManager.default.isExecutableFile(atPath: "/usr/sbin/rsyslogd")

/// A real rsyslog (Debian's rsyslogd) on a loopback UDP port, writing what it receives to a file
/// a field per column: hostname, app-name, procid, msgid, severity, message.
final class Rsyslog {
    let dir = NSTemporaryDirectory() + "decos-rsyslog-\(UUID().uuidString)"
    let port: Int
    let process = Process()
    var received: String { (try? String(contentsOfFile: dir + "/received", encoding: .utf8)) ?? "" }

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        port = freeLoopbackPort(SOCK_DGRAM)
        try """
        global(workDirectory="\(dir)")
        module(load="imudp")
        input(type="imudp" address="127.0.0.1" port="\(port)")
        template(name="columns" type="string" string="%hostname%|%app-name%|%procid%|%msgid%|%syslogseverity-text%|%msg%\\n")
        *.* action(type="omfile" file="\(dir)/received" template="columns")
        """.write(toFile: dir + "/rsyslog.conf", atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rsyslogd")
        process.arguments = ["-n", "-f", dir + "/rsyslog.conf", "-i", dir + "/rsyslogd.pid"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Listening once a probe sent to it comes out in the file.
        let out = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(out) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = UInt16(port).bigEndian
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = try waitFor("rsyslogd listening on 127.0.0.1:\(port)", within: 20) {
            let probe = Array("<14>1 - probe - - - - ready?".utf8)
            _ = withUnsafePointer(to: &to) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(out, probe, probe.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return received.contains("ready?")
        }
    }

    deinit {
        // SIGKILL: rsyslogd inherits the test process's signal mask, in which SIGTERM is blocked.
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// A node's log: kept for `/os/log`, and forwarded as RFC 5424 to a real syslog server.
@Suite(.bounded, .ownThreads, .enabled(if: canRunRsyslog, "needs rsyslogd (make deps installs it)"))
struct LogTests {
    @Test func aNodesLogReachesRsyslogAsRFC5424AndOsLogKeepsIt() throws {
        let rsyslog = try Rsyslog()
        let manifest = NSTemporaryDirectory() + "decos-logging-\(UUID().uuidString).xml"
        try """
        <Manifest xmlns="urn:decos:manifest" node="logged">
          <Logging syslog="udp://127.0.0.1:\(rsyslog.port)" lines="500"/>
          <Service contract="urn:decos:examples:counter" name="/counter"/>
        </Manifest>
        """.write(toFile: manifest, atomically: true, encoding: .utf8)
        let node = try NodeProcess(manifest: manifest)
        let pid = node.process.processIdentifier
        // rsyslog parsed each field where RFC 5424 puts it.
        let expected = "logged|decos|\(pid)|ServiceKernel|info|registered decos://logged/counter (urn:decos:examples:counter)"
        _ = try waitFor("the node's line in rsyslog's file", within: 10) { rsyslog.received.contains(expected) }
        let log = try curl(node.base + "/os/log").out
        #expect(log.contains("<Label>ServiceKernel</Label><Message>registered decos://logged/counter (urn:decos:examples:counter)</Message>"), "\(log.prefix(2000))")
        #expect(log.contains("<Syslog><Destination>udp://127.0.0.1:\(rsyslog.port)</Destination><Sent>"), "\(log.prefix(500))")
        #expect(log.contains("<Dropped>0</Dropped>"))
    }

    @Test func aSupervisedProcesssOutputIsLoggedAndSubscribersSeeNewLinesLive() throws {
        let rsyslog = try Rsyslog()
        let manifest = NSTemporaryDirectory() + "decos-logging-\(UUID().uuidString).xml"
        try """
        <Manifest xmlns="urn:decos:manifest" node="talky">
          <Logging syslog="udp://127.0.0.1:\(rsyslog.port)"/>
          <Process name="talker" path="/bin/sh" restart="never">
            <Arg>-c</Arg><Arg>echo hello from stdout; echo trouble on stderr >&amp;2; exec sleep 1000</Arg>
          </Process>
        </Manifest>
        """.write(toFile: manifest, atomically: true, encoding: .utf8)
        let node = try NodeProcess(manifest: manifest)
        _ = try waitFor("the process's lines in /os/log", within: 10) {
            let log = try curl(node.base + "/os/log").out
            return log.contains("<Label>talker:stdout</Label><Message>hello from stdout</Message>")
                && log.contains("<Label>talker:stderr</Label><Message>trouble on stderr</Message>")
        }
        _ = try waitFor("the process's line at rsyslog", within: 10) { rsyslog.received.contains("talky|decos|\(node.process.processIdentifier)|talker:stdout|info|hello from stdout") }

        // A live tail: `decos ctl subscribe /os/log` prints each new line as it is logged.
        let tail = Process(), out = Pipe()
        tail.executableURL = URL(fileURLWithPath: decosBinary)
        tail.arguments = ["ctl", "subscribe", node.base + "/os/log"]
        tail.standardOutput = out
        try tail.run()
        defer { tail.terminate(); tail.waitUntilExit() }
        let seen = Mutex("")
        out.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            seen.withLock { $0 += String(decoding: d, as: UTF8.self) }
        }
        _ = try waitFor("the subscription", within: 10) { seen.withLock { $0.contains("subscribed to") } }
        // A service made now logs "registered …", with the Create's MessageID.
        let create = soapCreate.replacingOccurrences(of: "urn:uuid:1", with: "urn:uuid:tail-me")
            .replacingOccurrences(of: "<Name>/broken</Name><State><Nonsense/></State>", with: "<Name>/fresh</Name>")
        #expect(try curl("-H", "Content-Type: application/soap+xml", "--data-binary", create, node.base + "/constructor").out.contains("decos://talky/fresh"))
        _ = try waitFor("the new line on the tail", within: 10) {
            seen.withLock { $0.contains("registered decos://talky/fresh") && $0.contains("<Service>/constructor</Service>")
                && $0.contains("<MessageID>urn:uuid:tail-me</MessageID>") }
        }
    }

    @Test func oneCallIsFollowedAcrossNodesByItsMessageID() throws {
        let a = try NodeProcess(manifest: try clusterManifest(), extra: ["--node", "a"])
        let b = try NodeProcess(manifest: try clusterManifest(seeds: [a.clusterAddress]), extra: ["--node", "b"])
        try waitFor("a condition", within: 60) { try a.counters() == ["decos://a/counter", "decos://b/counter"] }
        // A Create sent to a's gateway for b's constructor: b logs the service it made under the
        // MessageID the client gave the call at a.
        let id = "urn:uuid:\(UUID().uuidString)"
        let create = soapCreate.replacingOccurrences(of: "urn:uuid:1", with: id)
            .replacingOccurrences(of: "<Name>/broken</Name><State><Nonsense/></State>", with: "<Name>/followed</Name>")
        #expect(try curl("-H", "Content-Type: application/soap+xml", "--data-binary", create, a.base + "/@b/constructor").out.contains("decos://b/followed"))
        let log = try curl(a.base + "/@b/os/log").out
        let line = log.components(separatedBy: "<Line>").first { $0.contains("registered decos://b/followed") } ?? ""
        #expect(line.contains("<Service>/constructor</Service>") && line.contains("<MessageID>\(id)</MessageID>"), "\(log.suffix(1500))")
    }

    @Test func aSyslogDestinationThatIsNotUDPIsRefused() throws {
        let manifest = NSTemporaryDirectory() + "decos-logging-\(UUID().uuidString).xml"
        try """
        <Manifest xmlns="urn:decos:manifest">
          <Logging syslog="tcp://127.0.0.1:514"/>
        </Manifest>
        """.write(toFile: manifest, atomically: true, encoding: .utf8)
        let r = try decos("manifest", "check", manifest)
        #expect(r.status != 0 && (r.out + r.err).contains(#"syslog="tcp://127.0.0.1:514" must be udp://HOST:PORT"#), "\(r.out)\(r.err)")
    }
}
