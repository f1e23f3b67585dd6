import CVerbs
import Infoset

/// What the RDMA plane puts on the wire (docs/wire.md, "The RDMA plane"): the buffer descriptor
/// in a message, and the payloads of RDMA_CONNECT, RDMA_ACCEPT and DATA_PROGRESS on the control
/// connection. Every decoder checks all it reads; the plane drops, with a warning, what fails.
enum RDMAWire {
    /// Where a lent buffer is: the sender's transfer number, its address, the memory window's key.
    struct Descriptor: Equatable {
        var transfer: UInt64
        var address: UInt64
        var rkey: UInt32
    }

    struct Progress: Equatable {
        var transfer: UInt64
        var bytes: UInt64
        /// The receiver has finished with the buffer, whole or not.
        var done: Bool
    }

    static func encode(_ d: Descriptor) -> [UInt8] {
        var w = ByteWriter()
        w.u64(d.transfer)
        w.u64(d.address)
        w.u32(d.rkey)
        return w.bytes
    }

    static func descriptor(_ bytes: [UInt8]) throws(ByteReader.Failure) -> Descriptor {
        var r = ByteReader(bytes)
        let d = Descriptor(transfer: try r.u64(), address: try r.u64(), rkey: try r.u32())
        try end(r)
        return d
    }

    /// The descriptor of a buffer of `length` bytes (never negative: the message's decoder checks
    /// it), checked against it: the buffer must end within the address space, or the address of
    /// one of its chunks (address + offset, `RDMARead`) would overflow and trap the reader.
    static func descriptor(_ bytes: [UInt8], length: Int) throws(ByteReader.Failure) -> Descriptor {
        let d = try descriptor(bytes)
        guard !d.address.addingReportingOverflow(UInt64(length)).overflow else {
            throw ByteReader(bytes).fail("a buffer of \(length) bytes at \(d.address) runs past the end of the address space")
        }
        return d
    }

    /// RDMA_CONNECT: `endpoint`.
    static func connect(_ e: dv_endpoint) -> [UInt8] {
        var w = ByteWriter()
        write(e, &w)
        return w.bytes
    }

    static func decodeConnect(_ payload: [UInt8]) throws(ByteReader.Failure) -> dv_endpoint {
        var r = ByteReader(payload)
        let e = try endpoint(&r)
        try end(r)
        return e
    }

    /// RDMA_ACCEPT: `endpoint`, `u32` the QPN of the CONNECT it answers.
    static func accept(_ e: dv_endpoint, answering qpn: UInt32) -> [UInt8] {
        var w = ByteWriter()
        write(e, &w)
        w.u32(qpn)
        return w.bytes
    }

    static func decodeAccept(_ payload: [UInt8]) throws(ByteReader.Failure) -> (endpoint: dv_endpoint, answering: UInt32) {
        var r = ByteReader(payload)
        let e = try endpoint(&r)
        let qpn = try r.u32()
        try end(r)
        return (e, qpn)
    }

    /// DATA_PROGRESS: `u64 transfer`, `u64 bytes`, `u8 done` (0 or 1).
    static func encode(_ p: Progress) -> [UInt8] {
        var w = ByteWriter()
        w.u64(p.transfer)
        w.u64(p.bytes)
        w.byte(p.done ? 1 : 0)
        return w.bytes
    }

    static func progress(_ payload: [UInt8]) throws(ByteReader.Failure) -> Progress {
        var r = ByteReader(payload)
        let transfer = try r.u64(), bytes = try r.u64()
        let done = try r.byte()
        guard done <= 1 else { throw r.fail("done is \(done), not 0 or 1") }
        try end(r)
        return Progress(transfer: transfer, bytes: bytes, done: done == 1)
    }

    // MARK: endpoints: u32 QPN | u32 PSN | 16 bytes GID

    static func write(_ e: dv_endpoint, _ w: inout ByteWriter) {
        w.u32(e.qpn)
        w.u32(e.psn)
        withUnsafeBytes(of: e.gid) { w.bytes.append(contentsOf: $0) }
    }

    /// An endpoint, checked: QPN and PSN are 24-bit numbers (QPN 0 and 1 are special queue pairs,
    /// never a peer's RC queue pair), and the GID is not all zeros.
    static func endpoint(_ r: inout ByteReader) throws(ByteReader.Failure) -> dv_endpoint {
        var e = dv_endpoint()
        e.qpn = try r.u32()
        e.psn = try r.u32()
        guard (2...0xFF_FFFF).contains(e.qpn) else { throw r.fail("queue pair number \(e.qpn) is not a 24-bit RC queue pair's") }
        guard e.psn <= 0xFF_FFFF else { throw r.fail("packet sequence number \(e.psn) is over 24 bits") }
        var gid = [UInt8]()
        for _ in 0..<16 { gid.append(try r.byte()) }
        guard gid.contains(where: { $0 != 0 }) else { throw r.fail("a GID of zeros") }
        withUnsafeMutableBytes(of: &e.gid) { $0.copyBytes(from: gid) }
        return e
    }

    private static func end(_ r: ByteReader) throws(ByteReader.Failure) {
        guard r.isAtEnd else { throw r.fail("\(r.remaining) bytes after the end") }
    }
}
