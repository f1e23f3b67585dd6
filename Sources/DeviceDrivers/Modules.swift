import CDecosInit
import ProcessKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What was done with one kernel module, for `/os/modules`.
public struct ModuleRecord: Sendable, Equatable {
    public enum State: String, Sendable {
        case loaded, alreadyLoaded = "already-loaded", builtin, failed, missing
    }
    public var name: String
    public var state: State
    /// Why it was loaded: a device's address, a dependency of another module, or the command line.
    public var reason: String
    public var error: String?
    /// How long finit_module took, for what was loaded.
    public var milliseconds: Double? = nil
}

/// The image's module tree (`/lib/modules/RELEASE`): which module serves a device (modules.alias),
/// what each needs first (modules.dep, modules.softdep `pre:`), what is built into the kernel
/// (modules.builtin). Loads with finit_module(2), dependencies first, each module once.
public final class ModuleLoader: Sendable {
    public let root: String
    private let paths: [String: String]      // name → path relative to root
    private let dependencies: [String: [String]]
    private let softPre: [String: [String]]
    private let aliases: [(pattern: String, module: String)]
    private let builtin: Set<String>
    private let records = Mutex<[ModuleRecord]>([])

    public init(root: String) {
        self.root = root
        var paths: [String: String] = [:], deps: [String: [String]] = [:]
        for line in (SysFS.read("\(root)/modules.dep") ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let path = parts.first else { continue }
            let name = Self.name(ofPath: String(path))
            paths[name] = String(path)
            deps[name] = parts.count > 1 ? parts[1].split(separator: " ").map { Self.name(ofPath: String($0)) } : []
        }
        var soft: [String: [String]] = [:]
        for line in (SysFS.read("\(root)/modules.softdep") ?? "").split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard words.count > 2, words[0] == "softdep" else { continue }
            var pre = false
            for w in words.dropFirst(2) {
                if w == "pre:" { pre = true } else if w == "post:" { pre = false } else if pre { soft[Self.normal(words[1]), default: []].append(Self.normal(w)) }
            }
        }
        var aliases: [(String, String)] = []
        for line in (SysFS.read("\(root)/modules.alias") ?? "").split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 3, words[0] == "alias" { aliases.append((String(words[1]), Self.normal(String(words[2])))) }
        }
        self.paths = paths
        self.dependencies = deps
        self.softPre = soft
        self.aliases = aliases
        self.builtin = Set((SysFS.read("\(root)/modules.builtin") ?? "").split(separator: "\n").map { Self.name(ofPath: String($0)) })
    }

    /// `kernel/drivers/net/virtio_net.ko` → `virtio_net`; module names treat `-` and `_` alike.
    static func name(ofPath path: String) -> String {
        var base = path.split(separator: "/").last.map(String.init) ?? path
        for ext in [".xz", ".zst", ".gz", ".ko"] where base.hasSuffix(ext) { base.removeLast(ext.count) }
        return normal(base)
    }

    static func normal(_ name: String) -> String { String(name.map { $0 == "-" ? "_" : $0 }) }

    public var loaded: [ModuleRecord] { records.withLock { $0 } }

    /// Every module whose alias pattern matches `modalias` (fnmatch rules, as modprobe uses).
    public func modules(for modalias: String) -> [String] {
        var out: [String] = []
        for (pattern, module) in aliases where fnmatch(pattern, modalias, 0) == 0 && !out.contains(module) { out.append(module) }
        return out
    }

    /// True when the image carries `name` or the kernel has it built in.
    public func knows(_ name: String) -> Bool { paths[Self.normal(name)] != nil || builtin.contains(Self.normal(name)) }

    /// Loads `name` and what it needs. Returns false when it or a dependency could not be loaded;
    /// the reason is in `loaded`.
    @discardableResult
    public func load(_ name: String, reason: String) -> Bool {
        let name = Self.normal(name)
        if let done = records.withLock({ $0.first { $0.name == name } }) { return done.state != .failed && done.state != .missing }
        if builtin.contains(name) { record(name, .builtin, reason); return true }
        guard let path = paths[name] else {
            record(name, .missing, reason, "not in this image's \(root)/modules.dep")
            return false
        }
        for pre in softPre[name] ?? [] where knows(pre) { load(pre, reason: "wanted before \(name)") }
        // modules.dep lists dependencies so that the last must load first.
        for dep in (dependencies[name] ?? []).reversed() where !load(dep, reason: "needed by \(name)") {
            record(name, .failed, reason, "its dependency \(dep) did not load")
            return false
        }
        let fd = open("\(root)/\(path)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { record(name, .failed, reason, "\(root)/\(path): \(SysFS.errnoText)"); return false }
        defer { close(fd) }
        let t0 = InitProcess.bootTime
        if decos_finit_module(fd, "") == 0 {
            let c = (InitProcess.bootTime - t0).components
            record(name, .loaded, reason, nil, milliseconds: Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15)
            return true
        }
        if errno == EEXIST { record(name, .alreadyLoaded, reason); return true }
        record(name, .failed, reason, "finit_module: \(SysFS.errnoText)")
        return false
    }

    private func record(_ name: String, _ state: ModuleRecord.State, _ reason: String, _ error: String? = nil, milliseconds: Double? = nil) {
        records.withLock { $0.append(ModuleRecord(name: name, state: state, reason: reason, error: error, milliseconds: milliseconds)) }
    }

    /// Coldplug: loads a module for every device without a driver, then looks again, because a
    /// loaded bus driver (virtio_pci) reveals devices of its own (virtio0, a NIC). Returns the devices.
    public func probe(sysfs: String = "/sys", rounds: Int = 4) -> [Device] {
        var tried: Set<String> = []
        var devices = Device.scan(sysfs: sysfs)
        for _ in 0..<rounds {
            var progress = false
            for d in devices where d.driver == nil {
                guard let alias = d.modalias else { continue }
                for m in modules(for: alias) where !tried.contains(m) && knows(m) {
                    tried.insert(m)
                    if load(m, reason: "\(d.bus) device \(d.address)") { progress = true }
                }
            }
            if !progress { break }
            devices = Device.scan(sysfs: sysfs)
        }
        return devices
    }
}
