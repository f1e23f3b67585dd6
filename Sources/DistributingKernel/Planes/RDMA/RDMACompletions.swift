import DeviceDrivers
import Dispatch
import Logging
import Synchronization

/// The RDMA plane's completions: one thread per device sleeps on the device's completion channel
/// (never spinning: a vCPU busy-polling a CQ starves the node's other work) and hands each
/// completion to whoever posted the work request, found by its id. A handler runs on this thread:
/// it must be short (post the next READ, resume a task), never block.
final class RDMACompletions: Sendable {
    let device: RDMADevice
    /// Why a work request did not succeed: it completed with an error (and so its queue pair
    /// failed), or it could not be posted at all (the send queue was full: the queue pair is fine).
    struct Failure: Error, CustomStringConvertible {
        var reason: String
        var posted: Bool
        var description: String { reason }
    }

    /// What to do when each outstanding work request completes (nil on success, else why not),
    /// and whether completions can still be read at all.
    private let waiting = Mutex<(handlers: [UInt64: @Sendable (Failure?) -> Void], readable: Bool)>(([:], true))
    private let nextID = Atomic<UInt64>(1)
    private let running = Atomic<Bool>(true)

    init(device: RDMADevice, logger: Logger) {
        self.device = device
        // A thread of its own for the device's life: it blocks in poll(2) between completions.
        DispatchQueue(label: "decos.rdma.completions.\(device.name)").async { [self] in
            while running.load(ordering: .relaxed) {
                let done: [RDMADevice.Completion]
                do { done = try device.poll(timeoutMilliseconds: 200) } catch {
                    // Nothing posted would ever be answered: whoever waits is told now, and
                    // whatever is posted from here on fails at once (the buffers go by TCP).
                    logger.error("RDMA completions of \(device.name) cannot be read (\(error)); the RDMA plane stops")
                    let stranded = waiting.withLock { w in
                        w.readable = false
                        defer { w.handlers.removeAll() }
                        return Array(w.handlers.values)
                    }
                    for handler in stranded { handler(Failure(reason: "completions cannot be read: \(error)", posted: true)) }
                    return
                }
                for c in done {
                    let handler = waiting.withLock { $0.handlers.removeValue(forKey: c.id) }
                    handler?(c.failure.map { Failure(reason: $0, posted: true) })
                }
            }
        }
    }

    /// Posts one work request on `qp` with a fresh id (`post` posts it) once its send queue has
    /// room, and calls `then` when it completes; if posting fails, `then` is called at once with why.
    func post(on qp: QueuePair, _ post: @escaping @Sendable (UInt64) throws(VerbsError) -> Void, then: @escaping @Sendable (Failure?) -> Void) {
        qp.room.whenFree { [self] in
            postNow(post) { failure in
                qp.room.release()
                then(failure)
            }
        }
    }

    private func postNow(_ post: (UInt64) throws(VerbsError) -> Void, then: @escaping @Sendable (Failure?) -> Void) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        guard waiting.withLock({ w in
            if w.readable { w.handlers[id] = then }
            return w.readable
        }) else {
            return then(Failure(reason: "the completions of \(device.name) cannot be read", posted: false))
        }
        do { try post(id) } catch {
            let handler = waiting.withLock { $0.handlers.removeValue(forKey: id) }
            handler?(Failure(reason: error.description, posted: false))
        }
    }

    /// Posts one work request on `qp` and waits for it: nil once it succeeded, else why it did not.
    func run(on qp: QueuePair, _ post: @escaping @Sendable (UInt64) throws(VerbsError) -> Void) async -> Failure? {
        await withCheckedContinuation { c in self.post(on: qp, post) { c.resume(returning: $0) } }
    }

    /// Stops the thread (within one poll's timeout).
    func stop() { running.store(false, ordering: .relaxed) }
}
