import CVerbs
#if canImport(Glibc)
import Glibc
#endif

/// Our verbs API: an opened RDMA device, registered memory, RC queue pairs and RDMA READ —
/// what the RDMA data plane is built on. libibverbs does the work (statically linked with the
/// rxe and mlx5 providers in the static build); CVerbs holds the C that Swift cannot call.
public struct VerbsError: Error, CustomStringConvertible {
    public var description: String
}

/// Calls a C function of ours that returns nil on failure and says why in the buffer it is given
/// (CVerbs, CXDP); the why becomes the error `fail` makes.
func reporting<T, E: Error>(_ fail: (String) -> E, _ call: (UnsafeMutablePointer<CChar>, Int) -> T?) throws(E) -> T {
    var err = [CChar](repeating: 0, count: 512)
    guard let r = err.withUnsafeMutableBufferPointer({ call($0.baseAddress!, $0.count) }) else {
        throw fail(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return r
}

/// Calls a CVerbs function that reports through an error buffer.
func verbs<T>(_ call: (UnsafeMutablePointer<CChar>, Int) -> T?) throws(VerbsError) -> T {
    try reporting({ VerbsError(description: $0) }, call)
}

/// An opened device. `@unchecked Sendable`: the context pointer never changes, and libibverbs'
/// calls on a context, its CQ and its queue pairs are thread-safe (the providers lock what they
/// share); the RDMA plane posts from any thread and polls from its completion thread.
public final class RDMADevice: @unchecked Sendable {
    let context: OpaquePointer
    public let name: String

    /// The devices libibverbs sees.
    public static func names() throws(VerbsError) -> [String] {
        var flat = [CChar](repeating: 0, count: 16 * 64)
        let n: Int32 = try verbs { err, len in
            let r = dv_device_names(&flat, 16, err, len)
            return r < 0 ? nil : r
        }
        return (0..<Int(n)).map { i in
            String(decoding: flat[(i * 64)..<(i * 64 + 64)].prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// Opens `name`, waiting up to `waitMilliseconds` for port 1 to be ACTIVE with its RoCEv2 GID.
    public init(_ name: String, waitMilliseconds: Int = 5000) throws(VerbsError) {
        self.name = name
        context = try verbs { err, len in dv_open(name, Int32(waitMilliseconds), err, len) }
    }

    deinit { dv_close(context) }

    /// The network interface a RoCE device runs over (the one its RoCEv2 GID at index 1 belongs to).
    public var netdev: String? { SysFS.read("/sys/class/infiniband/\(name)/ports/1/gid_attrs/ndevs/1") }

    public var port: (state: String, mtu: Int) {
        var state = [CChar](repeating: 0, count: 32)
        var mtu: Int32 = 0
        dv_port(context, &state, state.count, &mtu)
        return (String(decoding: state.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), Int(mtu))
    }

    /// One work completion: the request it ends, and how it ended.
    public struct Completion: Sendable {
        public var id: UInt64
        /// nil on success, else libibverbs' name for the failure ("remote access error", …).
        public var failure: String?
    }

    /// The completions there are now, or those that arrive within `timeoutMilliseconds` (waiting
    /// on the completion channel, never spinning); empty if none did.
    public func poll(timeoutMilliseconds: Int) throws(VerbsError) -> [Completion] {
        var out = [dv_completion](repeating: dv_completion(), count: 32)
        let n: Int32 = try verbs { err, len in
            let r = dv_poll(context, &out, Int32(out.count), Int32(timeoutMilliseconds), err, len)
            return r < 0 ? nil : r
        }
        return out.prefix(Int(n)).map { c in
            Completion(id: c.wr_id, failure: c.status == 0 ? nil : String(cString: c.status_name))
        }
    }

    /// Waits for one completion (on the completion channel) and returns its work-request id.
    public func wait(timeoutMilliseconds: Int = 10_000) throws(VerbsError) -> UInt64 {
        var id: UInt64 = 0
        let _: Int32 = try verbs { err, len in dv_wait(context, Int32(timeoutMilliseconds), &id, err, len) == 0 ? 0 : nil }
        return id
    }
}

/// Memory registered with a device: its own (allocated here), or memory registered where it lies
/// (a buffer-pool block), which must outlive the region. `@unchecked Sendable`: nothing in it
/// changes after registration; the device reads and writes the bytes, never this object.
public final class MemoryRegion: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer
    let region: OpaquePointer
    private let owned: Bool
    public var rkey: UInt32 { dv_mr_rkey(region) }
    public var address: UInt64 { UInt64(UInt(bitPattern: bytes.baseAddress)) }

    public init(_ device: RDMADevice, length: Int) throws(VerbsError) {
        bytes = .allocate(byteCount: length, alignment: 4096)
        owned = true
        let b = bytes
        do {
            region = try verbs { err, len in dv_register(device.context, b.baseAddress, length, err, len) }
        } catch {
            b.deallocate()
            throw error
        }
    }

    /// Registers `bytes` where they lie; they stay the caller's, and must stay mapped until this
    /// region is gone.
    public init(_ device: RDMADevice, registering bytes: UnsafeMutableRawBufferPointer) throws(VerbsError) {
        self.bytes = bytes
        owned = false
        region = try verbs { err, len in dv_register(device.context, bytes.baseAddress, bytes.count, err, len) }
    }

    deinit {
        dv_deregister(region)
        if owned { bytes.deallocate() }
    }
}

/// A type-2 memory window: how a region registered once is lent to one peer for one transfer.
/// Bound on the queue pair that peer reads through (a fresh rkey each bind), invalidated when the
/// lease ends: from then on a READ with that rkey fails at the peer, whatever the region holds next.
/// `@unchecked Sendable`: the pointer never changes; binds and invalidations are posted on a queue pair.
public final class MemoryWindow: @unchecked Sendable {
    let window: OpaquePointer

    public init(_ device: RDMADevice) throws(VerbsError) {
        window = try verbs { err, len in dv_mw_alloc(device.context, err, len) }
    }

    deinit { dv_mw_free(window) }
}

/// A reliable-connected queue pair. Exchange `endpoint`s out of band, then `connect`.
/// `@unchecked Sendable`: the pointer and endpoint never change; posting to a queue pair from
/// several threads is safe in libibverbs (the provider locks its send queue).
public final class QueuePair: @unchecked Sendable {
    let qp: OpaquePointer
    public let endpoint: dv_endpoint
    public var number: UInt32 { endpoint.qpn }
    /// Its send queue's slots: whoever posts takes one first (`SendQueueRoom`).
    public let room = SendQueueRoom(slots: Int(DV_SEND_QUEUE))

    public init(_ device: RDMADevice) throws(VerbsError) {
        var local = dv_endpoint()
        qp = try verbs { err, len in dv_qp_create(device.context, &local, err, len) }
        endpoint = local
    }

    deinit { dv_qp_destroy(qp) }

    /// Ends the queue pair: everything it has posted completes at once, flushed with an error.
    public func fail() { _ = dv_qp_fail(qp) }

    public func connect(to remote: dv_endpoint) throws(VerbsError) {
        var r = remote
        let _: Int32 = try verbs { err, len in dv_qp_connect(qp, &r, err, len) == 0 ? 0 : nil }
    }

    /// Posts a bind of `window` over `length` bytes of `region` at `offset`, readable by this queue
    /// pair's peer alone; returns the rkey to give it. Bound once completion `id` arrives.
    public func bind(_ window: MemoryWindow, region: MemoryRegion, offset: Int = 0, length: Int, id: UInt64) throws(VerbsError) -> UInt32 {
        precondition(offset + length <= region.bytes.count)
        var rkey: UInt32 = 0
        let _: Int32 = try verbs { err, len in
            dv_mw_bind(qp, window.window, region.region, region.bytes.baseAddress! + offset, UInt64(length), id, &rkey, err, len) == 0 ? 0 : nil
        }
        return rkey
    }

    /// Posts the invalidation of a window's `rkey` bound on this queue pair; done at completion `id`.
    public func invalidate(_ rkey: UInt32, id: UInt64) throws(VerbsError) {
        let _: Int32 = try verbs { err, len in dv_mw_invalidate(qp, rkey, id, err, len) == 0 ? 0 : nil }
    }

    /// Posts an RDMA READ of `length` bytes from the peer's (address, rkey) into `into` at `offset`
    /// (at most 2 GiB: one request's limit).
    public func read(into region: MemoryRegion, offset: Int = 0, length: Int, remoteAddress: UInt64, rkey: UInt32, id: UInt64) throws(VerbsError) {
        precondition(offset + length <= region.bytes.count)
        let _: Int32 = try verbs { err, len in
            dv_post_read(qp, region.region, region.bytes.baseAddress! + offset, remoteAddress, rkey, UInt32(length), id, err, len) == 0 ? 0 : nil
        }
    }
}

/// What an RDMA READ self-test did.
public struct RDMAReadResult: Sendable {
    public var device: String
    public var bytes: Int
    public var intact: Bool
    public var seconds: Double
    /// What a READ with the same rkey met once the window was invalidated (the lease ended).
    public var afterLease: String
}

public enum RDMASelfTest {
    /// Two queue pairs on one device, connected to each other through the wire (for rxe: the
    /// netdev's own address); one READs `bytes` from the other's memory in 1 MiB requests, as the
    /// RDMA plane will: through a memory window bound for that queue pair, then invalidated. The
    /// copy is checked byte for byte, and a READ after the invalidation must fail.
    public static func loopbackRead(device name: String, bytes: Int) async throws(VerbsError) -> RDMAReadResult {
        let result: Result<RDMAReadResult, VerbsError> = await blocking {
            do throws(VerbsError) {
                let device = try RDMADevice(name)
                let source = try MemoryRegion(device, length: bytes), target = try MemoryRegion(device, length: bytes)
                for i in 0..<bytes { source.bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ i >> 11) }
                let a = try QueuePair(device), b = try QueuePair(device)
                try a.connect(to: b.endpoint)
                try b.connect(to: a.endpoint)
                func completed(_ id: UInt64) throws(VerbsError) {
                    guard try device.wait() == id else { throw VerbsError(description: "completion out of order") }
                }
                // The owner lends its region to the reader's queue pair.
                let window = try MemoryWindow(device)
                let rkey = try b.bind(window, region: source, length: bytes, id: 1 << 40)
                try completed(1 << 40)
                let start = ContinuousClock.now
                let chunk = 1 << 20
                var offset = 0, id: UInt64 = 0
                while offset < bytes {
                    let n = min(chunk, bytes - offset)
                    try a.read(into: target, offset: offset, length: n, remoteAddress: source.address + UInt64(offset), rkey: rkey, id: id)
                    try completed(id)
                    offset += n
                    id += 1
                }
                let elapsed = ContinuousClock.now - start
                let intact = memcmp(source.bytes.baseAddress!, target.bytes.baseAddress!, bytes) == 0
                // The lease ends: the window is invalidated, and the same READ must now fail.
                try b.invalidate(rkey, id: 2 << 40)
                try completed(2 << 40)
                var afterLease = "still readable"
                do {
                    try a.read(into: target, length: min(bytes, 4096), remoteAddress: source.address, rkey: rkey, id: 3 << 40)
                    try completed(3 << 40)
                } catch {
                    afterLease = "refused: \(error)"
                }
                return .success(RDMAReadResult(device: name, bytes: bytes, intact: intact, seconds: elapsed.inSeconds, afterLease: afterLease))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
