import DeviceDrivers
import ProcessKernel

/// Boot work of the device-driver kernel: reading the module index (modules.dep, .alias, .softdep,
/// .builtin) of this machine's full Debian tree, against reading the same files' bytes alone:
/// `decos-bench modindex`.
func moduleIndexBenchmark() {
    // The running kernel's tree, else the one linux-image-amd64 installed for the images.
    let release = CommandLine.arguments.dropFirst(2).first ?? InitProcess.kernelRelease
    let root = "/lib/modules/\(release)"
    guard readFile("\(root)/modules.dep") != nil else { print("modindex  no module tree at \(root): decos-bench modindex RELEASE"); return }
    func best(_ body: () -> Void) -> Double {
        var times: [Double] = []
        for _ in 0..<7 {
            let t = ContinuousClock.now
            body()
            times.append(seconds(ContinuousClock.now - t) * 1000)
        }
        return times.min()!
    }
    var aliases = 0
    let index = best { aliases = ModuleLoader(root: root).modules(for: "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00").count }
    var bytes = 0
    let read = best { bytes = ["modules.dep", "modules.alias", "modules.softdep", "modules.builtin"].reduce(0) { $0 + (readFile("\(root)/\($1)")?.count ?? 0) } }
    print("modindex  full index of \(root) (\(bytes / 1024) KiB), parsed and one device matched (\(aliases) module): \(fmt(index, 1)) ms")
    print("baseline  reading the same files: \(fmt(read, 1)) ms")
    print("ratio     \(fmt(index / read, 1))x")
}
