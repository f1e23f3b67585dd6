import Addresses
#if canImport(Glibc)
import Glibc
#endif
import ProcessKernel
import Synchronization

/// Forwards the node's log lines to a syslog server: RFC 5424 messages, one per UDP datagram
/// (RFC 5426), facility daemon. Sending never blocks the logging thread: a datagram the socket
/// cannot take at once is dropped and counted, as UDP syslog would lose it anyway.
///
///     <PRI>1 TIMESTAMP HOSTNAME decos PROCID MSGID - MSG
///
/// HOSTNAME is the node's name, PROCID the process id, MSGID the subsystem that logged the line
/// (`DistributingKernel`, …), TIMESTAMP UTC to the millisecond.
public final class SyslogForwarder: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// What `/os/log` shows of the forwarding.
    public struct Status: Codable, Sendable, Equatable {
        public var destination: String
        public var sent: Int
        public var dropped: Int
    }

    /// Longest datagram sent: what RFC 5426 says every receiver takes.
    static let maxDatagram = 2048

    public let destination: String
    let hostname: String
    private let fd: Int32
    private let pid = Int(getpid())
    private let counts = Mutex((sent: 0, dropped: 0))

    /// A forwarder to `destination`, `udp://HOST:PORT` (an IPv4 or IPv6 address or a name),
    /// writing `hostname` into each message.
    public init(_ destination: String, hostname: String) throws(Failure) {
        guard let (host, port) = Self.parse(destination) else {
            throw Failure(description: "syslog destination \"\(destination)\" is not udp://HOST:PORT")
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let a = found else {
            throw Failure(description: "syslog host \(host) cannot be resolved")
        }
        defer { freeaddrinfo(found) }
        let fd = socket(a.pointee.ai_family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "no UDP socket for syslog: \(String(cString: strerror(errno)))") }
        guard connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "syslog destination \(destination): \(why)")
        }
        self.fd = fd
        self.destination = destination
        self.hostname = hostname
    }

    deinit { close(fd) }

    /// `udp://HOST:PORT` → (HOST, PORT), read as every address is (`parseHostPort`; HOST may be
    /// `[v6]`), but with a host named and a port that is not 0.
    public static func parse(_ s: String) -> (String, Int)? {
        guard s.hasPrefix("udp://"), !s.dropFirst(6).hasPrefix(":"), let (host, port) = parseHostPort(String(s.dropFirst(6))), port > 0 else { return nil }
        return (host, port)
    }

    public func send(_ line: LogLine) {
        let datagram = Self.format(line, hostname: hostname, pid: pid)
        let n = datagram.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        counts.withLock { if n == datagram.count { $0.sent += 1 } else { $0.dropped += 1 } }
    }

    public var status: Status { counts.withLock { Status(destination: destination, sent: $0.sent, dropped: $0.dropped) } }

    /// The RFC 5424 message for `line`, cut to `maxDatagram` bytes.
    static func format(_ line: LogLine, hostname: String, pid: Int) -> [UInt8] {
        let severity = switch line.level {
        case "trace", "debug": 7
        case "info": 6
        case "notice": 5
        case "warning": 4
        case "error": 3
        default: 2  // critical
        }
        let header = "<\(3 * 8 + severity)>1 \(timestamp(line.time)) \(field(hostname, 255)) decos \(pid) \(field(line.label, 32)) \(structuredData(line)) "
        return Array((Array(header.utf8) + Array(line.message.utf8)).prefix(maxDatagram))
    }

    /// The request a line was logged for, as an SD-ELEMENT: `[decos@32473 service="/kv"
    /// messageID="urn:uuid:…"]`, or "-". 32473 is the enterprise number RFC 5612 sets aside for
    /// examples: Decos has none registered, and RFC 5424 wants one in a private SD-ID.
    static func structuredData(_ line: LogLine) -> String {
        let params = [("service", line.service), ("messageID", line.messageID)].compactMap { name, value in
            value.map { "\(name)=\"\(paramValue($0))\"" }
        }
        return params.isEmpty ? "-" : "[decos@32473 " + params.joined(separator: " ") + "]"
    }

    /// A PARAM-VALUE: `"`, `\\` and `]` escaped, at most 256 characters.
    static func paramValue(_ s: String) -> String {
        var out = ""
        for c in s.prefix(256) {
            if c == "\"" || c == "\\" || c == "]" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// A header field: printable ASCII without spaces, at most `limit` characters; "-" if empty.
    static func field(_ s: String, _ limit: Int) -> String {
        let printable = s.unicodeScalars.filter { $0.value > 32 && $0.value < 127 }.prefix(limit)
        return printable.isEmpty ? "-" : String(String.UnicodeScalarView(printable))
    }

    /// RFC 3339 in UTC to the millisecond: 2026-11-29T15:05:00.123Z.
    static func timestamp(_ ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var t = tm()
        gmtime_r(&seconds, &t)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = Int(ms % 1000)
        let frac = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)).\(frac)Z"
    }
}
