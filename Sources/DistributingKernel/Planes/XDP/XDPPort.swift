import DeviceDrivers
import Dispatch
import ServiceKernel
import Synchronization

/// One AF_XDP socket on one receive queue of the plane's interface, and the thread that serves
/// it: it receives every frame of ours that arrives on the queue, hands each to the plane, and
/// sends what the plane builds. Its UMEM is a block of the buffer pool of the interface's NUMA
/// node, half of it frames to receive into, half frames to send from; payloads are copied between
/// them and the buffers (and the kernel copies frames in and out too where the driver has no
/// zero-copy: veth, most virtio).
///
/// `@unchecked Sendable`: `free` and `outgoing` and the socket's rings are touched only by the
/// port's own thread (`run` and what it calls); other threads only `wake` it.
final class XDPPort: @unchecked Sendable {
    static let frameSize = 4096
    static let frames = 4096

    let queue: Int
    /// Optional only so that deinit can close it before the UMEM goes back to the pool.
    private var open: XDPSocket?
    var socket: XDPSocket { open! }
    let umem: BufferPool.Block
    let pool: BufferPool
    /// The largest frame this port sends or takes: the interface's MTU plus the Ethernet header,
    /// within a UMEM frame less the headroom the kernel keeps before a received packet.
    let maxFrame: Int
    static let headroom = 256  // XDP_PACKET_HEADROOM
    private let wakeup: XDPWake
    private var free: [UInt64]
    private var outgoing: [(offset: UInt64, length: Int)] = []
    private let running = Atomic<Bool>(true)
    private let stopped = DispatchSemaphore(value: 0)

    init(filter: XDPFilter, interface: NetworkInterface, queue: Int, pool: BufferPool) throws {
        let umem = try pool.block(for: Self.frameSize * Self.frames)
        do {
            open = try XDPSocket(filter: filter, queue: queue, umem: UnsafeMutableRawBufferPointer(start: umem.base, count: Self.frameSize * Self.frames),
                                   frameSize: Self.frameSize, ring: Self.frames / 2)
            wakeup = try XDPWake()
        } catch {
            pool.give(umem)
            throw error
        }
        self.queue = queue
        self.umem = umem
        self.pool = pool
        maxFrame = min(interface.mtu + XDPWire.ethernetBytes, Self.frameSize - Self.headroom)
        let half = Self.frames / 2
        free = (half..<Self.frames).map { UInt64($0 * Self.frameSize) }
        socket.fill((0..<half).map { UInt64($0 * Self.frameSize) })
    }

    /// Serves the queue on a thread of its own until `stop`: `receive` is given each frame of
    /// ours that arrives, `serve` is called after each batch and returns whether it has more to
    /// send at once (else the thread sleeps until a frame arrives, `wake`, or a millisecond
    /// passes while `busy` says transfers are under way).
    func run(receive: @escaping @Sendable (XDPPort, UnsafeRawBufferPointer, UInt64) -> Void,
             serve: @escaping @Sendable (XDPPort, UInt64) -> (more: Bool, busy: Bool)) {
        DispatchQueue(label: "decos.xdp.queue\(queue)").async { [self] in
            var state = (more: false, busy: false)
            while running.load(ordering: .relaxed) {
                if !state.more { _ = socket.wait(milliseconds: state.busy ? 1 : 200, wake: wakeup) }
                let now = Self.microseconds()
                let got = socket.received(max: 256)
                for f in got { receive(self, UnsafeRawBufferPointer(start: umem.base + Int(f.offset), count: f.length), now) }
                if !got.isEmpty { socket.fill(got.map(\.offset)) }
                free += socket.completed(max: Self.frames)
                state = serve(self, now)
                flush()
            }
            stopped.signal()
        }
    }

    /// Wakes the thread: there is new work for it.
    func wake() { wakeup.ring() }

    /// Builds a frame in a free frame of the UMEM (`write` returns its length) and queues it;
    /// false, with nothing written, when every send frame is in use.
    @discardableResult
    func send(_ write: (UnsafeMutableRawBufferPointer) -> Int) -> Bool {
        guard let offset = free.popLast() else { return false }
        let n = write(UnsafeMutableRawBufferPointer(start: umem.base + Int(offset), count: maxFrame))
        outgoing.append((offset, n))
        if outgoing.count >= 64 { flush() }
        return true
    }

    /// Frames free to build in now.
    var freeFrames: Int { free.count }

    private func flush() {
        guard !outgoing.isEmpty else { return socket.kick() }
        let queued = socket.send(outgoing)
        outgoing.removeFirst(queued)
    }

    /// Stops the thread and waits for it; then the UMEM goes back to the pool.
    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        wake()
        stopped.wait()
    }

    deinit {
        // The block goes back only once the socket is closed and the kernel writes into it no more.
        open = nil
        pool.give(umem)
    }

    /// The port's clock.
    static func microseconds() -> UInt64 {
        let origin = start  // made on first use: before reading the clock, so the difference is never negative
        let d = ContinuousClock.now - origin
        return UInt64(d.components.seconds) * 1_000_000 + UInt64(d.components.attoseconds / 1_000_000_000_000)
    }
    private static let start = ContinuousClock.now
}
