import Decos
import DeviceDrivers
import Infoset
import Logging
import ProcessKernel
import ServiceKernel
import StandardServices
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The node as PID 1 of a VM or a machine: the kernel command line instead of arguments, drivers
/// and network set up by us, and the machine powered off or rebooted at the end. Never returns.
enum Appliance {
    static let imageClusterKey = "/etc/decos/cluster.key"
    /// The HTTPS pair `make image TLS=1` puts in an image (boot/tls-cert.sh).
    static let imageCertificate = "/etc/decos/tls.crt", imageKey = "/etc/decos/tls.key"

    static func main() async -> Never {
        setvbuf(stdout, nil, _IOLBF, 0)
        let release = InitProcess.kernelRelease
        say("decos \(DecosVersion.string) is PID 1 on Linux \(release) (the node runs as its process \(getpid())); /init started at \(ms(InitProcess.startedAt)) ms, the node's Swift main at \(ms(InitProcess.bootTime)) ms")
        for e in InitProcess.earlyErrors { say("early mount: \(e)") }
        let cmdline = KernelCommandLine(readFile("/proc/cmdline").map { String(decoding: $0, as: UTF8.self) } ?? "")
        let p = BootParameters(cmdline)
        for e in p.errors { say("kernel command line: \(e)") }
        bootstrapLogging(Logger.Level(rawValue: p.logLevel) ?? .info)

        // 3. Device drivers: modules for the devices found, then the network.
        let loader = ModuleLoader(root: "/lib/modules/\(release)")
        let devices = loader.probe()
        for m in p.modules { loader.load(m, reason: "decos.modules") }
        for r in loader.loaded where r.state == .failed || r.state == .missing {
            say("module \(r.name) (\(r.reason)): \(r.state.rawValue): \(r.error ?? "")")
        }
        let driversDone = InitProcess.bootTime
        let nics = devices.flatMap(\.interfaces)
        say("drivers: \(devices.count) devices, \(loader.loaded.filter { $0.state == .loaded }.count) modules loaded, links \(nics.isEmpty ? "none" : nics.joined(separator: " ")) at \(ms(InitProcess.bootTime)) ms")
        // The data disk, where durable services keep their state: mounted at /data, formatted first
        // if it was never used (Sources/DeviceDrivers/DataDisk.swift).
        let disk = DataDisk.prepare(p.data, loader: loader, within: .seconds(120))
        say(disk.description)
        let diskDone = InitProcess.bootTime
        let os = OperatingSystem(supervisor: nodeSupervisor(), modules: loader, isAppliance: true)
        await NetworkSetup.configure(p, dhcp: { link, rt in await DHCPClient.configure(link, rt, note: { os.note(link: link.name, $0); say("\(link.name): \($0)") }) },
                                     note: { link, text in os.note(link: link, text); say("\(link): \(text)") })

        softRoCE(p.rxe, loader: loader, os: os)
        let networkDone = InitProcess.bootTime
        // The manifest from the image, with the command line over it. A manifest that cannot be read
        // still leaves a node with its system services, so an operator can see what is wrong.
        var m: Manifest
        do { m = try Node.loadManifest(p.manifest) } catch {
            say("manifest: \(error.description)\ndecos: booting with the system services only")
            m = Manifest(file: p.manifest)
        }
        let overrides = Overrides(http: p.http, node: p.node, listen: p.listen, seeds: p.seeds, clusterKey: p.clusterKey, dataPlanes: p.dataPlanes, syslog: p.syslog)
        for problem in overrides.apply(to: &m) { say("kernel command line: \(problem); ignored") }
        storage(&m, disk: disk)
        // Nothing outside the machine could reach an appliance's gateway on loopback.
        if m.gateway == nil { m.gateway = GatewayBinding() }
        if let h = m.gateway?.host, h.hasPrefix("127.") || h == "localhost" { m.gateway?.host = "0.0.0.0" }
        if m.gateway?.tls == false, readFile(imageCertificate) != nil, readFile(imageKey) != nil {
            m.gateway?.certificate = imageCertificate
            m.gateway?.key = imageKey
        }
        if m.cluster != nil, m.cluster?.keyFile == nil, readFile(imageClusterKey) != nil {
            m.cluster?.keyFile = imageClusterKey  // every image carries one (boot/mkimage.sh)
        }
        let secret = readSecret(p.operatorToken)
        if secret == nil { say("no operator token at \(p.operatorToken): only the manifest's rules apply") }

        let node: Node
        do {
            node = try await Node.boot(m, extra: DecosCLI.extra, os: os, operatorSecret: secret)
        } catch {
            InitProcess.panic("boot failed: \(error)", delay: p.panicDelay)
        }
        let ready = InitProcess.bootTime, start = InitProcess.startedAt
        BootPhases.record("drivers", took: driversDone - start, in: node.kernel.metrics)
        BootPhases.record("disk", took: diskDone - driversDone, in: node.kernel.metrics)
        BootPhases.record("network", took: networkDone - diskDone, in: node.kernel.metrics)
        say(NodeRunner.readyLine(node).dropFirst("decos: ".count)
            + "; /init to ready \(ms(ready - start)) ms (drivers \(ms(driversDone - start)), disk \(ms(diskDone - driversDone)), network \(ms(networkDone - diskDone)), services \(ms(ready - networkDone))), kernel start to ready \(ms(ready)) ms")
        let action = await NodeRunner.serve(node) ?? .reboot
        say("node \(node.kernel.node) stopped; \(action == .poweroff ? "powering off" : "rebooting")")
        StorageLock.release()
        if let released = DataDisk.release() { say(released) }
        let why = InitProcess.halt(action)
        InitProcess.panic("reboot(2) failed: \(why)", delay: p.panicDelay)
    }

    /// Durable services keep their state on the data disk when the manifest names no storage. With
    /// neither, they cannot start: the manifest's error is said and the node boots with the rest,
    /// instead of failing its boot and rebooting for ever.
    static func storage(_ m: inout Manifest, disk: DataDisk.Outcome) {
        if let given = m.storage {
            if disk.storage == nil || !(given == DataDisk.mountPoint || given.hasPrefix(DataDisk.mountPoint + "/")) {
                say("storage: the manifest's \(given) is not on the data disk: what durable services keep there is in memory, lost at power off")
            }
            return
        }
        m.storage = disk.storage
        let durable = m.services.filter(\.durable)
        guard m.storage == nil, !durable.isEmpty else { return }
        do { try Node.check(m, contracts: DecosCLI.contracts) } catch {
            for e in error.errors where e.message.contains("has no storage") { say("manifest: \(e)") }
        }
        m.services.removeAll(where: \.durable)
        say("without a data disk the durable services do not start (\(durable.map { $0.name ?? $0.contract }.joined(separator: ", "))); the rest of the node boots")
    }

    /// `decos.rxe=eth0`: a Soft-RoCE device (rxe0, rxe1, …) over each named link, for verbs.
    static func softRoCE(_ netdevs: [String], loader: ModuleLoader, os: OperatingSystem) {
        guard !netdevs.isEmpty else { return }
        // rxe asks the crypto API for crc32 when a device is made; the kernel loads crc32_generic
        // for it on demand, through decos as /sbin/modprobe.
        for m in ["rdma_rxe", "ib_uverbs"] where !loader.load(m, reason: "decos.rxe") {
            say("Soft-RoCE: cannot load \(m) (build the image with NICS including rxe)")
            return
        }
        do {
            let rdma = try RDMANetlink()
            for (i, netdev) in netdevs.enumerated() {
                let name = "rxe\(i)"
                do {
                    try rdma.addSoftRoCE(name, over: netdev)
                    os.note(link: netdev, "Soft-RoCE device \(name)")
                    say("\(netdev): Soft-RoCE device \(name)")
                } catch where error.code == EEXIST {
                    os.note(link: netdev, "Soft-RoCE device \(name) (made by an earlier start of the node)")
                } catch { os.note(link: netdev, "Soft-RoCE: \(error)"); say("\(netdev): Soft-RoCE: \(error)") }
            }
        } catch { say("Soft-RoCE: \(error)") }
    }

    static func say(_ s: some StringProtocol) { print("decos: \(s)") }

    static func ms(_ d: Duration) -> String {
        String(Int(d.inMilliseconds.rounded()))
    }
}
