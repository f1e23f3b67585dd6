import Infoset
import Logging
import Synchronization
@testable import ServiceKernel
import Testing
import TestKit

/// The node's log in memory and as syslog messages.
struct LogBookTests {
    func line(_ i: Int, _ message: String = "") -> LogLine {
        LogLine(time: Int64(i), level: "info", label: "Test", message: message.isEmpty ? "line \(i)" : message)
    }

    @Test func keepsTheLastLinesInOrderAndCutsLongOnes() {
        let book = LogBook()
        book.keep(100)
        for i in 0..<250 { book.record(line(i)) }
        #expect(book.lines.map(\.time) == Array(150..<250).map(Int64.init))
        book.keep(10)
        #expect(book.lines.map(\.time) == Array(240..<250).map(Int64.init))
        book.record(line(1, String(repeating: "x", count: 100_000)))
        #expect(book.lines.last!.message.utf8.count <= LogBook.maxLineBytes + 3)
    }

    @Test func formatsRFC5424() {
        let l = LogLine(time: 1_796_050_000_123, level: "warning", label: "DistributingKernel", message: "member b is suspect")
        let text = String(decoding: SyslogForwarder.format(l, hostname: "node a", pid: 42), as: UTF8.self)
        // <PRI> is daemon (3) · 8 + warning (4); a space in the host name cannot be in the field.
        #expect(text == "<28>1 2026-11-30T14:46:40.123Z nodea decos 42 DistributingKernel - member b is suspect")
        let huge = LogLine(time: 0, level: "error", label: "", message: String(repeating: "y", count: 10_000))
        let cut = SyslogForwarder.format(huge, hostname: "", pid: 1)
        #expect(cut.count == SyslogForwarder.maxDatagram)
        #expect(String(decoding: cut.prefix(50), as: UTF8.self).hasPrefix("<27>1 1970-01-01T00:00:00.000Z - decos 1 - - "))
    }

    @Test func destinationsAreUDPHostAndPort() {
        let v4 = SyslogForwarder.parse("udp://10.0.0.1:514"), v6 = SyslogForwarder.parse("udp://[::1]:5514")
        #expect(v4?.0 == "10.0.0.1" && v4?.1 == 514)
        #expect(v6?.0 == "::1" && v6?.1 == 5514)
        #expect(SyslogForwarder.parse("tcp://10.0.0.1:514") == nil)
        #expect(SyslogForwarder.parse("udp://10.0.0.1") == nil)
        #expect(SyslogForwarder.parse("udp://:514") == nil)
        #expect(SyslogForwarder.parse("udp://h:70000") == nil)
    }

    @Test func theManifestSaysWhereAndHowMany() throws {
        let m = try Manifest.parse(Array(#"<Manifest xmlns="urn:decos:manifest"><Logging syslog="udp://10.0.0.9:514" lines="300"/></Manifest>"#.utf8), file: "m.xml")
        #expect(m.syslog == "udp://10.0.0.9:514" && m.logLines == 300)
        #expect(throws: ManifestErrors.self) {
            try Manifest.parse(Array(#"<Manifest xmlns="urn:decos:manifest"><Logging lines="5"/></Manifest>"#.utf8), file: "m.xml")
        }
    }
}

/// Lines logged while a request is handled name its service and MessageID.
@Suite(.bounded) struct RequestLogTests {
    /// Logs a line for each request, through a handler writing to a book of the test's own; with
    /// a partner, it first asks the partner the same verb for the request it is handling.
    actor Chatty: Service {
        static let contract = "urn:test:chatty"
        static let book = LogBook()
        let logger = Logger(label: "chatty") { LogBookHandler(label: $0, book: Chatty.book) }
        var context: ServiceContext?
        init(config: ServiceConfig) {}
        func start(_ context: ServiceContext) async throws { self.context = context }
        func handle(_ request: Request) async throws -> Element? {
            if let context, let partner = context.partners["next"] {
                _ = try await context.call(request.verb, partner, for: request)
            }
            logger.handling(request).info("\(context?.path ?? "") handling \(request.verb.rawValue)")
            return nil
        }
    }

    @Test func aLineLoggedForARequestCarriesItsServiceAndMessageID() async throws {
        let k = Kernel(node: "n1", security: SecurityManager(policy: nil, exposed: false), contracts: Contracts([Chatty.self]))
        try await k.create(ServiceConfig(contract: Chatty.contract, name: "/chatty"))
        try await k.create(ServiceConfig(contract: Chatty.contract, name: "/relay", partners: ["next": "/chatty"]))
        var m = Message(.get, to: "/relay")
        m.messageID = "urn:uuid:follow-me"
        _ = await k.send(m, as: .anonymous)
        let relayed = try #require(Chatty.book.lines.last { $0.message == "/relay handling Get" })
        #expect(relayed.service == "/relay" && relayed.messageID == "urn:uuid:follow-me", "\(relayed)")
        // The call the relay made for the request has no MessageID of its own: its line carries the request's.
        let line = try #require(Chatty.book.lines.last { $0.message == "/chatty handling Get" })
        #expect(line.service == "/chatty" && line.messageID == "urn:uuid:follow-me", "\(line)")
        // And syslog carries both as structured data.
        let text = String(decoding: SyslogForwarder.format(line, hostname: "n1", pid: 7), as: UTF8.self)
        #expect(text.contains(#" [decos@32473 service="/chatty" messageID="urn:uuid:follow-me"] /chatty handling Get"#), "\(text)")
    }

    @Test func aClientsMessageIDCannotForgeALineOrGrowOneWithoutBound() {
        // A client picks its MessageID: a newline in it would start a forged line on the console.
        let forged = Logger(label: "t").handling(RequestContext(service: "/s", messageID: "urn:x\n2026 info decos: [ServiceKernel] forged"))
        #expect(forged[metadataKey: "decos.messageID"] == .string("urn:x?2026 info decos: [ServiceKernel] forged"))
        let long = Logger(label: "t").handling(RequestContext(service: "/s", messageID: String(repeating: "x", count: 10_000)))
        #expect(long[metadataKey: "decos.messageID"] == .string(String(repeating: "x", count: 256)))
    }

    @Test func watchersSeeEachLineAsItIsLogged() {
        let book = LogBook()
        let seen = Mutex<[String]>([])
        let id = book.watch { line in seen.withLock { $0.append(line.message) } }
        book.record(LogLine(time: 1, level: "info", label: "T", message: "one"))
        book.unwatch(id)
        book.record(LogLine(time: 2, level: "info", label: "T", message: "two"))
        #expect(seen.withLock { $0 } == ["one"])
    }

    @Test func structuredDataValuesAreEscaped() {
        let l = LogLine(time: 0, level: "info", label: "", message: "m", service: #"/a"b]c\d"#)
        #expect(SyslogForwarder.structuredData(l) == #"[decos@32473 service="/a\"b\]c\\d"]"#)
    }
}
