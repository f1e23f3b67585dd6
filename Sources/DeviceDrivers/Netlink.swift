#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A netlink socket speaking one protocol family (NETLINK_ROUTE for links, addresses and routes;
/// NETLINK_RDMA for Soft-RoCE links). Requests are sent one at a time and wait for their answer.
public final class NetlinkSocket {
    let fd: Int32
    private var sequence: UInt32 = 1

    public init(protocol proto: Int32) throws(NetlinkError) {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
        guard fd >= 0 else { throw NetlinkError(operation: "socket(AF_NETLINK)", code: errno) }
        // No bind: the kernel gives the socket an address at the first send.
    }

    deinit { close(fd) }

    /// Sends one request and returns the messages of its answer: the dump's parts for NLM_F_DUMP,
    /// nothing for an acknowledged change. A negative acknowledgement throws with its errno.
    func request(type: UInt16, flags: UInt16, body: [UInt8], what: String) throws(NetlinkError) -> [NetlinkMessage] {
        let seq = sequence
        sequence &+= 1
        var msg = NetlinkBuilder()
        msg.u32(UInt32(16 + body.count)); msg.u16(type); msg.u16(flags | 1 /* NLM_F_REQUEST */ | 4 /* NLM_F_ACK */)
        msg.u32(seq); msg.u32(0)
        msg.bytes += body
        let sent = msg.bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == msg.bytes.count else { throw NetlinkError(operation: what, code: errno) }
        var out: [NetlinkMessage] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            // struct sockaddr_nl: family, pad, port id (u32), groups (u32). Port 0 is the kernel:
            // anything another process sends to our port is not an answer.
            var from = [UInt8](repeating: 0, count: 12)
            var fromLength = socklen_t(12)
            let n = buffer.withUnsafeMutableBytes { b in
                from.withUnsafeMutableBytes { f in
                    recvfrom(fd, b.baseAddress, b.count, 0, f.baseAddress!.assumingMemoryBound(to: sockaddr.self), &fromLength)
                }
            }
            if n < 0 { if errno == EINTR { continue }; throw NetlinkError(operation: what, code: errno) }
            guard fromLength >= 8, from.u32(4) == 0 else { continue }
            if try Self.take(buffer, count: n, seq: seq, what: what, into: &out) { return out }
        }
    }

    /// Takes the messages answering request `seq` out of one datagram's `n` bytes; true when the
    /// answer ended there (NLMSG_DONE, or an acknowledgement). A negative acknowledgement throws.
    /// Lengths are checked against the datagram before anything is read: a malformed message ends
    /// the datagram's parsing, never reads past it.
    static func take(_ buffer: [UInt8], count n: Int, seq: UInt32, what: String, into out: inout [NetlinkMessage]) throws(NetlinkError) -> Bool {
        var at = 0
        while at + 16 <= n {
            let len = Int(buffer.u32(at)), mtype = buffer.u16(at + 4), mseq = buffer.u32(at + 8)
            guard len >= 16, at + len <= n else { break }
            defer { at += (len + 3) & ~3 }
            guard mseq == seq else { continue }
            switch mtype {
            case 3: return true  // NLMSG_DONE
            case 2:              // NLMSG_ERROR: errno 0 is the acknowledgement
                guard len >= 20 else { throw NetlinkError(operation: what, code: EBADMSG) }
                // The kernel sends −errno; negating Int32.min would trap (found by fuzzing).
                let raw = Int32(bitPattern: buffer.u32(at + 16))
                let code = raw == .min ? EBADMSG : -raw
                if code == 0 { return true }
                throw NetlinkError(operation: what, code: code)
            default:
                out.append(NetlinkMessage(type: mtype, payload: Array(buffer[(at + 16)..<(at + len)])))
            }
        }
        return false
    }
}

public struct NetlinkError: Error, CustomStringConvertible {
    public var operation: String
    public var code: Int32
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

struct NetlinkMessage {
    var type: UInt16
    var payload: [UInt8]

    /// The attributes after a fixed header of `headerSize` bytes: type → value.
    func attributes(after headerSize: Int) -> [UInt16: [UInt8]] {
        var out: [UInt16: [UInt8]] = [:]
        var at = headerSize
        while at + 4 <= payload.count {
            let len = Int(payload.u16(at)), type = payload.u16(at + 2) & 0x3fff
            guard len >= 4, at + len <= payload.count else { break }
            out[type] = Array(payload[(at + 4)..<(at + len)])
            at += (len + 3) & ~3
        }
        return out
    }
}

/// Builds netlink bodies in host byte order, attributes padded to four bytes.
struct NetlinkBuilder {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v) { bytes += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v) { bytes += $0 } }
    mutating func attribute(_ type: UInt16, _ value: [UInt8]) {
        u16(UInt16(4 + value.count)); u16(type)
        bytes += value
        while bytes.count % 4 != 0 { bytes.append(0) }
    }
    mutating func attribute(_ type: UInt16, string: String) { attribute(type, Array(string.utf8) + [0]) }
    mutating func attribute(_ type: UInt16, u32 v: UInt32) { attribute(type, withUnsafeBytes(of: v) { Array($0) }) }
}

extension [UInt8] {
    func u16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    var cString: String { String(decoding: prefix { $0 != 0 }, as: UTF8.self) }
}
