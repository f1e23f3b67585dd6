import ProcessKernel
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The operator token of a hosted node (docs/security.md): `decos run` makes a fresh one unless it
/// is given `--operator-token`, and writes it to a file only its user can read, named for the
/// gateway's port; `decos ctl` sends it by default to a node on a loopback address with that port.
/// So the verbs that change the node itself (power, processes, manifests) need a secret that only
/// this machine's user holds, even on loopback, where any web page in that user's browser can
/// reach the gateway.
enum OperatorToken {
    /// `$XDG_RUNTIME_DIR/decos` (a tmpfs only the user can enter), else `$HOME/.decos`.
    static var directory: String {
        if let run = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !run.isEmpty { return run + "/decos" }
        if let home = getenv("HOME").map({ String(cString: $0) }), !home.isEmpty { return home + "/.decos" }
        return "/tmp/decos-\(getuid())"
    }

    /// Named for the port and the network namespace: a loopback address means a different node
    /// in each namespace, and tests run nodes on the same port in several.
    static func path(port: Int) -> String {
        var ns = stat()
        let namespace = stat("/proc/self/ns/net", &ns) == 0 ? "\(ns.st_ino)-" : ""
        return "\(directory)/operator-\(namespace)\(port).token"
    }

    /// 32 random bytes as hex: 256 bits, from the kernel's random source.
    static func fresh() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in
            let b = UInt8.random(in: 0...255, using: &g)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }

    /// Why a token file could not be written.
    struct Problem: Error { let description: String }

    /// Writes `secret` for the gateway on `port`, readable by this user alone. The file stays open
    /// under an exclusive lock for as long as the node runs (the descriptor returned; `remove`
    /// ends it): a file a killed node left behind is held by nobody, and `decos ctl` (which asks
    /// for a shared lock, so two of them never mistake each other for the node) does not send
    /// its dead token to whatever listens on that port now.
    static func write(_ secret: String, port: Int) throws(Problem) -> Int32 {
        let dir = directory
        if mkdir(dir, 0o700) != 0, errno != EEXIST { throw Problem(description: "cannot make \(dir): \(String(cString: strerror(errno)))") }
        // Another user may have made it first (a shared /tmp): it must be ours, and ours alone.
        var st = stat()
        guard lstat(dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == getuid(), st.st_mode & 0o077 == 0 else {
            throw Problem(description: "\(dir) is not a directory of this user's that only it may use: remove it, or set XDG_RUNTIME_DIR")
        }
        let file = path(port: port)
        // A new file each time (a stale one of another user's is not written through).
        unlink(file)
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw Problem(description: "cannot write \(file): \(String(cString: strerror(errno)))") }
        let bytes = Array((secret + "\n").utf8)
        guard flock(fd, LOCK_EX) == 0, Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw Problem(description: "cannot write \(file): \(why)")
        }
        return fd
    }

    /// Removes the file, and lets go of it, when the node that wrote it stops — unless another
    /// node on the port has written its own there since.
    static func remove(port: Int, held fd: Int32) {
        let file = path(port: port)
        var mine = stat(), there = stat()
        if fstat(fd, &mine) == 0, lstat(file, &there) == 0, mine.st_dev == there.st_dev, mine.st_ino == there.st_ino { unlink(file) }
        close(fd)
    }

    /// The token `decos ctl` sends to `host:port` when it is given none: a loopback node's own.
    /// Only to a loopback address (never a name that merely starts with "127."), only from a file
    /// this user owns that no one else may read (not through a link another user planted), and
    /// only while the node that wrote it runs (it holds the file under a lock).
    static func forNode(host: String, port: Int) -> String? {
        guard isLoopback(host) else { return nil }
        // Non-blocking: a FIFO planted in its place cannot hold `decos ctl` up.
        let fd = open(path(port: port), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == getuid(), st.st_mode & 0o077 == 0 else { return nil }
        // Nobody holds it: its node was killed and another may have the port now.
        guard flock(fd, LOCK_SH | LOCK_NB) != 0, errno == EWOULDBLOCK else { return nil }
        var bytes = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &bytes, bytes.count)
        guard n > 0 else { return nil }
        let secret = String(decoding: bytes[..<n], as: UTF8.self).trimmingXMLSpace()
        return secret.utf8.count >= 16 ? secret : nil
    }

    static func isLoopback(_ host: String) -> Bool {
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if h.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, h, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        return inet_pton(AF_INET6, h, &v6) == 1 && withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
    }
}
