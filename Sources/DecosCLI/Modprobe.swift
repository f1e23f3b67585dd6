import DeviceDrivers
import ProcessKernel
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `decos` called as `/sbin/modprobe`, a link the image carries: the kernel runs it when it needs a
/// module on demand (request_module: a crypto algorithm, a link type, a protocol), as
/// `modprobe -q -- NAME`, where NAME is a module or one of its aliases (`crypto-crc32`).
enum Modprobe {
    static func main(_ arguments: [String]) -> Never {
        let names = arguments.dropFirst().filter { !$0.hasPrefix("-") }
        let quiet = arguments.contains("-q")
        guard !names.isEmpty else {
            if !quiet { fputs("usage: modprobe [-q] [--] MODULE|ALIAS\n", stderr) }
            exit(1)
        }
        let loader = ModuleLoader(root: "/lib/modules/\(InitProcess.kernelRelease)")
        var failed = false
        for name in names {
            let candidates = loader.knows(name) ? [name] : loader.modules(for: name).filter(loader.knows)
            if candidates.isEmpty || !candidates.contains(where: { loader.load($0, reason: "request_module \(name)") }) {
                failed = true
                if !quiet { fputs("modprobe: \(name): \(loader.loaded.last?.error ?? "no module or alias by that name in this image")\n", stderr) }
            }
        }
        exit(failed ? 1 : 0)
    }
}
