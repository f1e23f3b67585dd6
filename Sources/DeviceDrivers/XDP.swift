import CXDP
#if canImport(Glibc)
import Glibc
#endif

/// AF_XDP, for the XDP data plane: an XDP program that steers one EtherType to AF_XDP sockets and
/// leaves every other frame to the kernel, and the sockets themselves (CXDP holds the C).
public struct XDPError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Calls a CXDP function that reports through an error buffer.
func xdp<T>(_ call: (UnsafeMutablePointer<CChar>, Int) -> T?) throws(XDPError) -> T {
    try reporting({ XDPError(description: $0) }, call)
}

/// The XDP program on one interface, while this object lives (a BPF link: it also goes when the
/// process dies). `@unchecked Sendable`: the pointer never changes and nothing is called on it
/// after init but `mode` and deinit.
public final class XDPFilter: @unchecked Sendable {
    let filter: OpaquePointer
    public let interface: String
    public let ethertype: UInt16

    /// Steers frames of `ethertype` arriving on `interface` to the sockets opened on its queues.
    public init(interface: String, ethertype: UInt16, queues: Int = 64) throws(XDPError) {
        let index = Int32(if_nametoindex(interface))
        guard index > 0 else { throw XDPError(description: "no interface \(interface)") }
        self.interface = interface
        self.ethertype = ethertype
        filter = try xdp { err, len in dx_filter_attach(index, ethertype, Int32(queues), err, len) }
    }

    deinit { dx_filter_detach(filter) }

    /// "native" where the driver runs the program, "generic" where the kernel does.
    public var mode: String { String(cString: dx_filter_mode(filter)) }
}

/// An AF_XDP socket on one queue of an interface, zero-copy where the driver has it and in copy
/// mode where not, its frames in `umem`, which the caller owns and keeps mapped for the socket's
/// life. Frames are named by their offset in the UMEM. `@unchecked Sendable`: the rings are single-producer, single-consumer — one thread
/// receives (`received`, `fill`) and one sends (`send`, `completed`) at a time; the owner keeps it so.
public final class XDPSocket: @unchecked Sendable {
    let socket: OpaquePointer
    public let umem: UnsafeMutableRawBufferPointer
    public let frameSize: Int
    /// Keeps the program that steers frames here attached while the socket is open.
    let filter: XDPFilter

    public init(filter: XDPFilter, queue: Int = 0, umem: UnsafeMutableRawBufferPointer, frameSize: Int = 4096, ring: Int = 1024) throws(XDPError) {
        precondition(ring > 0 && ring & (ring - 1) == 0, "rings are a power of two")
        let index = Int32(if_nametoindex(filter.interface))
        guard index > 0 else { throw XDPError(description: "no interface \(filter.interface)") }
        self.umem = umem
        self.frameSize = frameSize
        self.filter = filter
        socket = try xdp { err, len in
            dx_socket_open(filter.filter, index, Int32(queue), umem.baseAddress, UInt64(umem.count), UInt32(frameSize), UInt32(ring), err, len)
        }
    }

    deinit { dx_socket_close(socket) }

    /// Whether the NIC reads and writes the UMEM itself (zero-copy) or the kernel copies (copy mode).
    public var zeroCopy: Bool { dx_socket_zerocopy(socket) != 0 }

    /// Frames received since the last call (offset in the UMEM, length), at most `max`.
    public func received(max: Int = 64) -> [(offset: UInt64, length: Int)] {
        var offsets = [UInt64](repeating: 0, count: max), lengths = [UInt32](repeating: 0, count: max)
        let n = Int(dx_rx(socket, &offsets, &lengths, Int32(max)))
        return (0..<n).map { (offsets[$0], Int(lengths[$0])) }
    }

    /// Gives frames to the kernel to receive into; how many it took.
    @discardableResult
    public func fill(_ offsets: [UInt64]) -> Int { Int(dx_fill(socket, offsets, Int32(offsets.count))) }

    /// Queues frames (offset, length) to send; how many were queued.
    @discardableResult
    public func send(_ frames: [(offset: UInt64, length: Int)]) -> Int {
        let offsets = frames.map(\.offset), lengths = frames.map { UInt32($0.length) }
        return Int(dx_tx(socket, offsets, lengths, Int32(frames.count)))
    }

    /// What the kernel dropped on this socket (all zero if it cannot say).
    public var drops: (other: UInt64, ringFull: UInt64, fillEmpty: UInt64, invalid: UInt64) {
        var out = [UInt64](repeating: 0, count: 4)
        _ = dx_stats(socket, &out)
        return (out[0], out[1], out[2], out[3])
    }

    /// Has the kernel send what the send ring still holds.
    public func kick() { _ = dx_kick(socket) }

    /// Frames whose sending is done, to use again.
    public func completed(max: Int = 64) -> [UInt64] {
        var offsets = [UInt64](repeating: 0, count: max)
        // Counted first: `offsets.prefix(dx_completed(&offsets))` would take the prefix of the
        // array as it was before the call, all zeros.
        let n = Int(dx_completed(socket, &offsets, Int32(max)))
        return Array(offsets.prefix(n))
    }

    /// Waits up to `milliseconds` for a frame to arrive, or for `wake` to be rung; true if a
    /// frame is there.
    public func wait(milliseconds: Int, wake: XDPWake? = nil) -> Bool { dx_wait(socket, wake?.fd ?? -1, Int32(milliseconds)) > 0 }
}

/// Rings a thread out of `XDPSocket.wait` before its timeout (an eventfd): new work for it.
public final class XDPWake: Sendable {
    let fd: Int32

    public init() throws(XDPError) {
        fd = dx_wake_open()
        guard fd >= 0 else { throw XDPError(description: "eventfd: \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    public func ring() { dx_wake(fd) }
}
