import Synchronization

/// Named gates a test opens to let the calls it holds through: a call kept in flight exactly as
/// long as the test needs, with no timer for a slow machine to outlast. A test service waits on
/// one (`Gates.wait`); the test opens it (`Gates.open`) once it has checked what it meant to.
public enum Gates {
    private struct Gate {
        var open = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private static let gates = Mutex<[String: Gate]>([:])

    /// Returns once the gate `name` is open (at once if it is).
    public static func wait(_ name: String) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let open = gates.withLock { g -> Bool in
                if g[name]?.open == true { return true }
                g[name, default: Gate()].waiters.append(c)
                return false
            }
            if open { c.resume() }
        }
    }

    /// Opens the gate `name`: whoever waits goes on, and whoever comes later passes.
    public static func open(_ name: String) {
        let waiting = gates.withLock { g -> [CheckedContinuation<Void, Never>] in
            defer { g[name] = Gate(open: true) }
            return g[name]?.waiters ?? []
        }
        for w in waiting { w.resume() }
    }
}
