import CDecosInit
import Dispatch
import ProcessKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The appliance's data disk: the block device durable services keep their state on. Found (the
/// first virtio disk, or `decos.data=/dev/…`), formatted ext4 when it has never been used — only
/// when its first MiB is all zeros — and mounted at `/data`. A disk holding anything else is left
/// as it is. ext4's journal makes a power cut cost a replay at the next mount, never an fsck by hand.
public enum DataDisk {
    public static let mountPoint = "/data"
    /// e2fsprogs' mke2fs, which the image carries with its libraries (boot/mkimage.sh).
    public static let mke2fs = "/sbin/mke2fs"
    /// How much of the disk must be zeros before it is formatted.
    public static let blankBytes = 1 << 20

    /// What the start of a device holds.
    public enum Contents: Equatable, Sendable {
        /// An ext2/3/4 filesystem: mounted as it is (the ext4 driver mounts all three).
        case ext
        /// The first MiB is all zeros: never used, formatted.
        case blank
        /// Anything else (a partition table, another filesystem, data): never formatted.
        case other(String)
    }

    /// What became of the data disk at boot; `description` is the console's line.
    public enum Outcome: Sendable, CustomStringConvertible {
        /// Mounted at /data; `formatted` when this boot made its filesystem.
        case mounted(device: String, size: String, formatted: Bool, milliseconds: Int)
        /// Mounted already, by an earlier start of the node on this machine (PID 1 restarted it).
        case alreadyMounted(device: String)
        case none(why: String)
        case refused(device: String, size: String, holds: String)
        case failed(device: String, why: String)

        /// Where durable services keep their state: /data, or nil when the node runs volatile.
        public var storage: String? {
            switch self {
            case .mounted, .alreadyMounted: DataDisk.mountPoint
            default: nil
            }
        }

        public var description: String {
            let volatile = "the node keeps nothing across restarts (durable services do not start)"
            switch self {
            case let .mounted(device, size, true, ms):
                return "data disk \(device) (\(size)): no filesystem on it (its first MiB was zeros); formatted ext4 and mounted at \(mountPoint) in \(ms) ms"
            case let .mounted(device, size, false, ms):
                return "data disk \(device) (\(size)): its ext4 filesystem mounted at \(mountPoint) in \(ms) ms"
            case let .alreadyMounted(device):
                return "data disk \(device): mounted at \(mountPoint) by an earlier start of the node"
            case let .none(why):
                return "no data disk (\(why)): \(volatile)"
            case let .refused(device, size, holds):
                return "data disk \(device) (\(size)) holds \(holds), not an ext4 filesystem, and its first MiB is not all zeros: "
                    + "not formatted, not used; \(volatile). Zero its first MiB to have it formatted, or choose another with decos.data=/dev/…"
            case let .failed(device, why):
                return "data disk \(device): \(why); \(volatile)"
            }
        }
    }

    /// `prepare`, given at most `limit`: a disk that never answers (a read, the mount's journal
    /// replay, stuck in the kernel) must not hold the whole boot, where not even /os/node would
    /// answer. Past the limit the node goes on without storage and says why; the stuck step stays
    /// stuck on its own thread, and if it ends later, what it mounted is unmounted at power off.
    public static func prepare(_ requested: String?, loader: ModuleLoader, within limit: Duration) -> Outcome {
        bounded(limit) { prepare(requested, loader: loader) }
            ?? .failed(device: requested ?? firstVirtioDisk() ?? "?",
                       why: "no answer within \(limit.components.seconds) s (a read or the mount is stuck in the kernel; its console messages say where)")
    }

    /// `work`'s result if it ends within `limit`, else nil (it goes on, on a queue of its own).
    static func bounded<T: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () -> T) -> T? {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue(label: "decos.datadisk").async {
            let value = work()
            result.withLock { $0 = value }
            done.signal()
        }
        let ms = Int(limit.components.seconds * 1000 + limit.components.attoseconds / 1_000_000_000_000_000)
        guard done.wait(timeout: .now() + .milliseconds(ms)) == .success else { return nil }
        return result.withLock { $0 }
    }

    /// Finds the data disk, loads what mounting it needs, formats it if blank, mounts it at /data.
    /// `requested`: `decos.data` (a device, or "none"); nil for the first virtio disk.
    public static func prepare(_ requested: String?, loader: ModuleLoader, sysfs: String = "/sys") -> Outcome {
        if requested == "none" { return .none(why: "decos.data=none") }
        guard let device = requested ?? firstVirtioDisk(sysfs: sysfs) else {
            return .none(why: "no virtio disk; boot/qemu.sh attaches one unless DISK=none")
        }
        let name = String(device.split(separator: "/").last ?? "")
        // A disk named on the command line may still be appearing.
        for _ in 0..<200 where access("\(sysfs)/class/block/\(name)", F_OK) != 0 { usleep(10_000) }
        guard access("\(sysfs)/class/block/\(name)", F_OK) == 0 else { return .none(why: "no block device \(device)") }
        if let mounted = mountedDevice(at: mountPoint) { return .alreadyMounted(device: mounted) }
        let t0 = InitProcess.bootTime
        if let why = ensureNode(device, name: name, sysfs: sysfs) { return .failed(device: device, why: why) }
        guard loader.load("ext4", reason: "the data disk \(device)") else {
            return .failed(device: device, why: "the ext4 module did not load (\(loader.loaded.last?.error ?? "see /os/modules"))")
        }
        let size = sizeText(sysfs: sysfs, name: name)
        let formatted: Bool
        switch formatIfBlank(device) {
        case .failure(.refused(let holds)): return .refused(device: device, size: size, holds: holds)
        case .failure(.failed(let why)): return .failed(device: device, why: why)
        case .success(let f): formatted = f
        }
        if mkdir(mountPoint, 0o755) != 0 && errno != EEXIST { return .failed(device: device, why: "mkdir \(mountPoint): \(SysFS.errnoText)") }
        guard mount(device, mountPoint, "ext4", UInt(MS_NOATIME | MS_NODEV | MS_NOSUID), nil) == 0 else {
            return .failed(device: device, why: "mount on \(mountPoint): \(SysFS.errnoText)")
        }
        return .mounted(device: device, size: size, formatted: formatted, milliseconds: Int((InitProcess.bootTime - t0).inMilliseconds.rounded()))
    }

    public enum Refusal: Error, Equatable {
        /// The device holds something else: it is left alone.
        case refused(String)
        case failed(String)
    }

    /// Formats `device` (a block device, or a file in tests) with mke2fs when its first MiB is all
    /// zeros; leaves an ext filesystem as it is; refuses anything else. True when it formatted.
    public static func formatIfBlank(_ device: String, mke2fs: String = DataDisk.mke2fs) -> Result<Bool, Refusal> {
        let head: [UInt8]
        switch readHead(device) {
        case .failure(let why): return .failure(.failed("cannot read it: \(why)"))
        case .success(let h): head = h
        }
        switch contents(head) {
        case .ext: return .success(false)
        case .other(let what): return .failure(.refused(what))
        case .blank: break
        }
        // 4 KiB blocks whatever the size (mke2fs would take 1 KiB below 512 MiB), as SQLite's pages.
        if let why = run([mke2fs, "-q", "-t", "ext4", "-b", "4096", "-L", "decos-data", device]) { return .failure(.failed("mke2fs: \(why)")) }
        guard case .success(let after) = readHead(device), contents(after) == .ext else {
            return .failure(.failed("mke2fs succeeded, but no ext4 filesystem is there"))
        }
        return .success(true)
    }

    /// What the start of a device holds, from its first MiB (or all of it, if smaller).
    public static func contents(_ head: [UInt8]) -> Contents {
        // The superblock is at 1024; its magic 0xEF53 (little-endian) at 56 within it.
        if head.count >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF { return .ext }
        if head.allSatisfy({ $0 == 0 }) { return .blank }
        func has(_ text: String, at offset: Int) -> Bool {
            let bytes = Array(text.utf8)
            return head.count >= offset + bytes.count && Array(head[offset..<offset + bytes.count]) == bytes
        }
        if has("EFI PART", at: 512) { return .other("a GPT partition table") }
        if has("XFSB", at: 0) { return .other("an XFS filesystem") }
        if has("_BHRfS_M", at: 0x10040) { return .other("a btrfs filesystem") }
        if has("LUKS", at: 0) { return .other("a LUKS encrypted volume") }
        if has("SWAPSPACE2", at: 4086) { return .other("swap space") }
        if head.count >= 512 && head[510] == 0x55 && head[511] == 0xAA { return .other("an MBR partition table or a boot sector") }
        return .other("data of a kind this node does not know")
    }

    /// The first virtio disk sysfs lists (`/dev/vda`), or nil.
    public static func firstVirtioDisk(sysfs: String = "/sys") -> String? {
        SysFS.list("\(sysfs)/block").first { $0.hasPrefix("vd") }.map { "/dev/\($0)" }
    }

    /// The device mounted at `path`, from /proc/self/mountinfo; nil when nothing is.
    public static func mountedDevice(at path: String, mountinfo: String = "/proc/self/mountinfo") -> String? {
        guard let text = SysFS.read(mountinfo) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS
            guard fields.count > 4, fields[4] == path, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            return String(fields[dash + 2])
        }
        return nil
    }

    /// Before power off or reboot: unmounts /data, so the next mount has no journal to replay. If a
    /// file is still open it is remounted read-only instead; failing that, the sync before reboot(2)
    /// and the journal cover it. Returns the line to say, nil when no data disk is mounted.
    public static func release() -> String? {
        guard let device = mountedDevice(at: mountPoint) else { return nil }
        sync()
        if umount2(mountPoint, 0) == 0 { return "data disk \(device) unmounted" }
        let busy = SysFS.errnoText
        if mount(nil, mountPoint, nil, UInt(MS_REMOUNT | MS_RDONLY), nil) == 0 { return "data disk \(device) remounted read-only (unmount: \(busy))" }
        return "data disk \(device) stays mounted (unmount: \(busy); read-only: \(SysFS.errnoText)); synced, its journal covers the rest"
    }

    // MARK: - Helpers

    /// The device node: devtmpfs makes it as the disk appears; if it has not, made from sysfs' MAJ:MIN.
    static func ensureNode(_ device: String, name: String, sysfs: String) -> String? {
        for _ in 0..<100 where access(device, F_OK) != 0 { usleep(10_000) }
        if access(device, F_OK) == 0 { return nil }
        guard let numbers = SysFS.read("\(sysfs)/class/block/\(name)/dev")?.split(separator: ":").compactMap({ UInt64($0) }), numbers.count == 2 else {
            return "no device node \(device), and sysfs does not say its numbers"
        }
        let (major, minor) = (numbers[0], numbers[1])
        // glibc's makedev.
        let dev = ((major & 0xfffff000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffffff00) << 12) | (minor & 0xff)
        guard mknod(device, S_IFBLK | 0o600, dev_t(dev)) == 0 else { return "mknod \(device): \(SysFS.errnoText)" }
        return nil
    }

    /// The first MiB of a device (less if it is smaller).
    static func readHead(_ device: String) -> Result<[UInt8], Refusal> {
        let fd = open(device, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.failed(SysFS.errnoText)) }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: blankBytes)
        var got = 0
        while got < head.count {
            let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, off_t(got)) }
            if n < 0 { if errno == EINTR { continue }; return .failure(.failed(SysFS.errnoText)) }
            if n == 0 { break }
            got += n
        }
        return .success(Array(head[0..<got]))
    }

    static func sizeText(sysfs: String, name: String) -> String {
        guard let sectors = SysFS.read("\(sysfs)/class/block/\(name)/size").flatMap({ Int($0) }) else { return "size unknown" }
        let mib = sectors / 2048
        return mib >= 10240 ? "\(mib / 1024) GiB" : "\(mib) MiB"
    }

    /// Runs a program to its end, stdin from /dev/null (mke2fs then refuses any question it would
    /// ask), its output collected. nil when it exited 0, else what went wrong with what it wrote.
    static func run(_ argv: [String]) -> String? {
        guard access(argv[0], X_OK) == 0 else { return "\(argv[0]): \(SysFS.errnoText) (the image carries it: boot/mkimage.sh)" }
        var fds: [Int32] = [-1, -1]
        guard decos_pipe_cloexec(&fds) == 0 else { return "pipe: \(SysFS.errnoText)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        var attr = SpawnAttributes(newSession: false)
        defer { attr.destroy() }
        let args = argv.map { strdup($0) } + [nil]
        let env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/sbin:/bin:/usr/sbin:/usr/bin"), nil]
        defer { (args + env).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr.value, args, env)
        close(fds[1])
        defer { close(fds[0]) }
        guard rc == 0 else { return "\(argv[0]): \(String(cString: strerror(rc)))" }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += chunk[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let said = String(decoding: output, as: UTF8.self).split(separator: "\n").joined(separator: " / ")
        let exited = status & 0x7f == 0, code = (status >> 8) & 0xff
        if exited && code == 0 { return nil }
        return (exited ? "exited with status \(code)" : "killed by signal \(status & 0x7f)") + (said.isEmpty ? "" : ": \(said)")
    }
}
