#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection to a port on loopback, for tests that speak bytes a client library would
/// not (garbage to a peer port, a request on a keep-alive connection at a chosen moment). Every
/// read has a deadline: a server that never answers fails the test, it does not hang it.
public final class RawConnection {
    public let fd: Int32

    /// Connects to 127.0.0.1:`port`; each read that gets nothing for `timeout` gives up (so a test
    /// that waits on a node in its own process must run on its own threads: `.ownThreads`).
    /// `receiveBuffer`, when given, is the socket's receive buffer: small, for a client that
    /// stops reading.
    public init(port: Int, timeout: Duration = .seconds(30), receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        // At least a microsecond: a zero timeval would mean "never give up".
        let micros = max(1, timeout.components.seconds * 1_000_000 + timeout.components.attoseconds / 1_000_000_000_000)
        var limit = timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else {
            close(fd)
            throw WaitFailure(description: "connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
    }

    public func send(_ s: String) { _ = s.utf8CString.withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) } }

    /// Reads until `done` says the bytes so far are enough, the peer closes, or a read times out.
    /// Returns nil if nothing was read.
    public func read(until done: (String) -> Bool) -> String? {
        var all = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return all.isEmpty ? nil : String(decoding: all, as: UTF8.self) }
            all += buf[0..<n]
            let text = String(decoding: all, as: UTF8.self)
            if done(text) { return text }
        }
    }

    /// True once the server has closed the connection (or reset it); false if a read timed out.
    public func waitForClose() -> Bool {
        var b = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = recv(fd, &b, b.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    deinit { close(fd) }
}
