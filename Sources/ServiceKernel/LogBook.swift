#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// One line of the node's log, as `/os/log` and syslog carry it.
public struct LogLine: Codable, Sendable, Equatable {
    /// Milliseconds since the Unix epoch.
    public var time: Int64
    public var level: String
    /// The subsystem that logged it (`ServiceKernel`, `DistributingKernel`, …).
    public var label: String
    public var message: String
    /// The service whose request was being handled when the line was logged, if any.
    public var service: String?
    /// That request's wsa:MessageID, if it had one: the same on every node the request reaches,
    /// so one call can be followed across a cluster.
    public var messageID: String?

    public init(time: Int64, level: String, label: String, message: String, service: String? = nil, messageID: String? = nil) {
        self.time = time
        self.level = level
        self.label = label
        self.message = message
        self.service = service
        self.messageID = messageID
    }
}

/// The request a line is logged for: the service it went to, and its wsa:MessageID (or, for a
/// request without one, that of the request that led to it). Each `Request` carries its own and
/// hands it on: a handler logs through `request.logger`, or `logger.handling(request)` for a logger
/// of its own, and calls on with `context.call(…, for: request)`. Passed along, not bound as a
/// task-local per delivery: binding one cost a fifth of a local call (docs/performance.md).
public struct RequestContext: Sendable {
    public var service: String?
    public var messageID: String?

    public init(service: String?, messageID: String?) {
        self.service = service
        self.messageID = messageID
    }

    /// The metadata keys a logger carries the context under; `LogBookHandler` moves them into
    /// the line's own fields (and syslog's structured data).
    static let serviceKey = "decos.service", messageIDKey = "decos.messageID"

    /// A MessageID as a client gave it, fit for a log line: at most 256 bytes, control characters
    /// as `?` (a newline in it would forge a line on the console).
    static func printable(_ id: String) -> String {
        guard id.utf8.count > 256 || id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return id }
        let cut = String(decoding: id.utf8.prefix(256), as: UTF8.self)
        return String(String.UnicodeScalarView(cut.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }))
    }
}

extension Logger {
    /// This logger with the request's service and MessageID on every line it logs.
    public func handling(_ request: Request) -> Logger { handling(request.context) }

    public func handling(_ context: RequestContext) -> Logger {
        var tagged = self
        if let service = context.service { tagged[metadataKey: RequestContext.serviceKey] = .string(service) }
        if let id = context.messageID { tagged[metadataKey: RequestContext.messageIDKey] = .string(RequestContext.printable(id)) }
        return tagged
    }
}

/// The node's log kept in memory: the last lines, bounded in number and in bytes, for
/// `/os/log`; and each line handed to a forwarder (syslog) as it is logged. One per process, as
/// swift-log's bootstrap is (`LogBookHandler` writes here).
public final class LogBook: Sendable {
    public static let shared = LogBook()
    public static let defaultLines = 2000
    /// A line longer than this is cut: the ring's bytes stay bounded whatever is logged.
    public static let maxLineBytes = 4096

    private struct Ring {
        var lines: [LogLine] = []
        var start = 0
        var capacity = LogBook.defaultLines
        var forwarder: SyslogForwarder?
        var watchers: [UInt64: @Sendable (LogLine) -> Void] = [:]
        var nextWatcher: UInt64 = 0
    }
    private let ring = Mutex(Ring())

    public init() {}

    /// Keeps the last `lines` lines from now on (at least 1).
    public func keep(_ lines: Int) {
        ring.withLock { r in
            let all = Self.ordered(r)
            r.capacity = max(1, lines)
            r.lines = Array(all.suffix(r.capacity))
            r.start = 0
        }
    }

    /// Sends every line from now on to a syslog server too (nil: to none).
    public func forward(to forwarder: SyslogForwarder?) { ring.withLock { $0.forwarder = forwarder } }

    /// Where lines are forwarded, if anywhere.
    public var forwarder: SyslogForwarder? { ring.withLock { $0.forwarder } }

    public func record(_ line: LogLine) {
        var line = line
        if line.message.utf8.count > Self.maxLineBytes {
            line.message = String(decoding: line.message.utf8.prefix(Self.maxLineBytes), as: UTF8.self) + "…"
        }
        let (forwarder, watchers) = ring.withLock { r in
            if r.lines.count < r.capacity { r.lines.append(line) } else {
                r.lines[r.start] = line
                r.start = (r.start + 1) % r.capacity
            }
            return (r.forwarder, r.watchers.values)
        }
        forwarder?.send(line)
        for w in watchers { w(line) }
    }

    /// Hands `watcher` each line from now on, as it is logged, until `unwatch`; it must not wait
    /// (it runs on whatever thread logged the line). Returns its number.
    public func watch(_ watcher: @escaping @Sendable (LogLine) -> Void) -> UInt64 {
        ring.withLock { r in
            r.nextWatcher += 1
            r.watchers[r.nextWatcher] = watcher
            return r.nextWatcher
        }
    }

    public func unwatch(_ id: UInt64) { _ = ring.withLock { $0.watchers.removeValue(forKey: id) } }

    /// The lines kept, oldest first.
    public var lines: [LogLine] { ring.withLock { Self.ordered($0) } }

    private static func ordered(_ r: Ring) -> [LogLine] { Array(r.lines[r.start...] + r.lines[..<r.start]) }
}

/// swift-log's handler for a node: each line to standard error (the console, as PID 1) as
/// before, and to the `LogBook`.
public struct LogBookHandler: LogHandler {
    private var stream: StreamLogHandler
    private let book: LogBook

    public init(label: String, book: LogBook = .shared) {
        stream = StreamLogHandler.standardError(label: label)
        self.book = book
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { stream.metadata }
        set { stream.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { stream[metadataKey: key] }
        set { stream[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        stream.log(event: event)
        // The subsystem is the logging module (`[ServiceKernel]` on the console), not the logger's label.
        func tag(_ key: String) -> String? {
            if case .string(let value)? = event.metadata?[key] ?? stream.metadata[key] { value } else { nil }
        }
        book.record(LogLine(time: LogBook.now(), level: event.level.rawValue, label: event.source, message: event.message.description,
                            service: tag(RequestContext.serviceKey), messageID: tag(RequestContext.messageIDKey)))
    }
}

extension LogBook {
    /// Milliseconds since the Unix epoch.
    static func now() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }
}
