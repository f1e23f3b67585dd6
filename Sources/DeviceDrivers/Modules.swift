import CDecosInit
import ProcessKernel
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What was done with one kernel module, for `/os/modules`.
public struct ModuleRecord: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable, CaseIterable {
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
    /// modules.alias patterns, NUL-terminated for fnmatch, with the length of their literal start.
    private let aliases: [(pattern: [CChar], literal: Int, module: String)]
    private let builtin: Set<String>
    private let records = Mutex<[ModuleRecord]>([])

    public init(root: String) {
        self.root = root
        // Parsed as bytes: a full distribution index has ~26,000 alias lines, and splitting Strings
        // costs ~50x more than this (`decos-bench modindex`).
        var paths: [String: String] = [:], deps: [String: [String]] = [:]
        for line in Self.lines("\(root)/modules.dep") {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let path = String(decoding: line[..<colon], as: UTF8.self)
            let name = Self.name(ofPath: path)
            paths[name] = path
            deps[name] = line[(colon + 1)...].split(separator: UInt8(ascii: " ")).map { Self.name(ofPath: String(decoding: $0, as: UTF8.self)) }
        }
        var soft: [String: [String]] = [:]
        for line in Self.lines("\(root)/modules.softdep") {
            let words = line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
            guard words.count > 2, words[0] == "softdep" else { continue }
            var pre = false
            for w in words.dropFirst(2) {
                // Kept as written: a soft dependency may be an alias (ext4 wants crypto-crc32c).
                if w == "pre:" { pre = true } else if w == "post:" { pre = false } else if pre { soft[Self.normal(words[1]), default: []].append(w) }
            }
        }
        var aliases: [([CChar], Int, String)] = []
        let prefix = Array("alias ".utf8)
        let wild = Set("*?[".utf8)
        for line in Self.lines("\(root)/modules.alias") where line.starts(with: prefix) {
            let words = line.dropFirst(prefix.count).split(separator: UInt8(ascii: " "))
            guard words.count == 2 else { continue }
            let pattern = words[0].map { CChar(bitPattern: $0) } + [0]
            let literal = words[0].firstIndex(where: wild.contains).map { $0 - words[0].startIndex } ?? words[0].count
            aliases.append((pattern, literal, Self.normal(String(decoding: words[1], as: UTF8.self))))
        }
        self.paths = paths
        self.dependencies = deps
        self.softPre = soft
        self.aliases = aliases
        self.builtin = Set(Self.lines("\(root)/modules.builtin").map { Self.name(ofPath: String(decoding: $0, as: UTF8.self)) })
    }

    /// A file's non-empty lines, as slices of its bytes.
    static func lines(_ path: String) -> [ArraySlice<UInt8>] {
        (readFile(path) ?? []).split(separator: UInt8(ascii: "\n"))
    }

    /// `kernel/drivers/net/virtio_net.ko` → `virtio_net`; module names treat `-` and `_` alike.
    static func name(ofPath path: String) -> String {
        var base = Substring(path)
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) { base = path[path.utf8.index(after: slash)...] }
        for ext in [".xz", ".zst", ".gz", ".ko"] where base.hasSuffix(ext) { base = base.dropLast(ext.utf8.count) }
        return normal(String(base))
    }

    static func normal(_ name: String) -> String {
        name.utf8.contains(UInt8(ascii: "-")) ? String(decoding: name.utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "_") : $0 }, as: UTF8.self) : name
    }

    public var loaded: [ModuleRecord] { records.withLock { $0 } }

    /// Every module whose alias pattern matches `modalias` (fnmatch rules, as modprobe uses).
    public func modules(for modalias: String) -> [String] {
        let text = modalias.utf8.map { CChar(bitPattern: $0) } + [0]
        var out: [String] = []
        for (pattern, literal, module) in aliases where literal < text.count && !out.contains(module) {
            // Most patterns differ from the device within their literal start: compare that first.
            var same = true
            for i in 0..<literal where pattern[i] != text[i] { same = false; break }
            if same, fnmatch(pattern, text, 0) == 0 { out.append(module) }
        }
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
        for pre in softPre[name] ?? [] {
            if knows(pre) { load(pre, reason: "wanted before \(name)"); continue }
            // An alias: the first module of the image that provides it and loads, as modprobe does.
            for m in modules(for: pre) where knows(m) && load(m, reason: "wanted before \(name) as \(pre)") { break }
        }
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
            record(name, .loaded, reason, nil, milliseconds: (InitProcess.bootTime - t0).inMilliseconds)
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
