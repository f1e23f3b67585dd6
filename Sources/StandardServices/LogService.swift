import Infoset
import ServiceKernel

/// `/os/log`: the node's last log lines, oldest first (as many as `<Logging lines>` keeps, 2000
/// unless set), and where they are forwarded with how many were sent and dropped. A subscriber
/// is sent each new line as it is logged: an `Insert` notification whose body is the `<Line>`.
public actor LogService: Service {
    public static let contract = "urn:decos:os:log"
    public static let operations = [ServiceOperation(.get, returns: Log.self)]

    /// `<Log><Syslog><Destination>udp://…</Destination><Sent>…</Sent><Dropped>…</Dropped></Syslog>
    /// <Line><Time>…</Time><Level>info</Level><Label>…</Label><Message>…</Message></Line>…</Log>`
    public struct Log: Codable, Sendable {
        public var syslog: SyslogForwarder.Status?
        public var line: [LogLine]
    }

    private var watcher: UInt64?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws {
        // Publishing only queues the line for each subscriber (bounded, docs/reliability.md):
        // it never waits, whichever thread is logging.
        watcher = LogBook.shared.watch { line in
            guard context.hasSubscribers, let body = try? InfosetEncoder().encode(line, as: "Line") else { return }
            context.publish(.insert, body: body)
        }
    }

    public func stop() async {
        if let watcher { LogBook.shared.unwatch(watcher) }
    }

    public func handle(_ request: Request) throws -> Element? {
        guard request.verb == .get else { throw Fault.actionNotSupported(request.verb, "/os/log") }
        return try infoset(Log(syslog: LogBook.shared.forwarder?.status, line: LogBook.shared.lines))
    }
}
