import CDecosInit
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What ends a node: both are orderly (services dropped, processes stopped, disks synced).
public enum PowerAction: String, Sendable {
    case poweroff, reboot
}

/// PID 1's own facts and duties: whether we are init, what the pre-runtime constructor did,
/// boot clocks, the signals init receives, and the final reboot(2).
public enum InitProcess {
    /// True when the node is the machine's user space: it runs as the child of PID 1's small C loop
    /// (CDecosInit), which mounted the early filesystems and restarts the node if it dies.
    public static var isAppliance: Bool { decos_early_init_ran() != 0 }

    /// What went wrong in the early mounts (an empty list when nothing did).
    public static var earlyErrors: [String] {
        String(cString: decos_early_init_errors()).split(separator: "\n").map(String.init)
    }

    /// CLOCK_BOOTTIME when `/init` started, before the Swift runtime: the kernel's own start is 0.
    public static var startedAt: Duration { .nanoseconds(decos_init_started_ns()) }

    /// CLOCK_BOOTTIME now: time since the kernel started, suspend included.
    public static var bootTime: Duration {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }

    /// The running kernel's release, from uname(2).
    public static var kernelRelease: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }


    /// Calls `handler` for the signals that ask init to stop (PID 1 passes them on to the node):
    /// SIGTERM and SIGPWR → poweroff, SIGINT (Ctrl-Alt-Del, or ^C in hosted mode) → reboot as the
    /// machine's node, poweroff otherwise.
    public static func onPowerSignals(_ handler: @escaping @Sendable (PowerAction, String) -> Void) {
        let pairs: [(Int32, PowerAction, String)] = [
            (SIGTERM, .poweroff, "SIGTERM"), (SIGPWR, .poweroff, "SIGPWR"),
            (SIGINT, isAppliance ? .reboot : .poweroff, isAppliance ? "SIGINT (Ctrl-Alt-Del)" : "SIGINT"),
        ]
        let sources = pairs.map { sig, action, name in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig)
            source.setEventHandler { handler(action, name) }
            source.resume()
            return source
        }
        signalSources.withLock { $0 += sources.map { UncheckedSendable(value: $0) } }
    }
    /// Held: a released source stops delivering.
    private static let signalSources = Mutex<[UncheckedSendable<any DispatchSourceSignal>]>([])

    /// Syncs and ends the machine. Returns only when the kernel refuses (not PID 1, no privilege).
    public static func halt(_ action: PowerAction) -> String {
        // The last lines must reach the console: a serial port still sending is cut off by the power.
        fflush(nil)  // every stdio stream, stdout included
        tcdrain(1)
        tcdrain(2)
        sync()
        _ = decos_reboot(action == .poweroff ? decos_rb_power_off : decos_rb_autoboot)
        return String(cString: strerror(errno))
    }

    /// Logs an unrecoverable error, waits `delay` seconds and reboots: PID 1 must never exit.
    public static func panic(_ message: String, delay: Int) -> Never {
        writeConsole("decos: fatal: \(message)\ndecos: rebooting in \(delay) s (decos.panic_delay)\n")
        sleep(UInt32(delay))
        _ = halt(.reboot)
        while true { pause() }
    }

    public static func writeConsole(_ s: String) {
        var s = s
        s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable { var value: T }

extension Duration {
    /// This duration as a floating-point number of seconds (or milliseconds), for reports and logs.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    public var inMilliseconds: Double { inSeconds * 1000 }
    /// Whole nanoseconds (saturating), as swift-metrics' timers take them.
    public var inNanoseconds: Int64 {
        let (seconds, atto) = components
        let (ns, over) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, overAgain) = ns.addingReportingOverflow(atto / 1_000_000_000)
        return over || overAgain ? (seconds < 0 ? .min : .max) : sum
    }
}
