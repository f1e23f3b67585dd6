import Dispatch

/// Runs blocking work (a syscall that waits: DHCP, a verbs completion) on a thread of its own, off
/// Swift's cooperative pool, whose few threads must never block.
func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in DispatchQueue(label: "decos.blocking").async { c.resume(returning: work()) } }
}
