import CPCI

/// A device the kernel found on a bus (PCI, virtio, …), as sysfs shows it.
public struct Device: Sendable, Equatable {
    public var bus: String
    /// The bus address: `0000:00:03.0` on PCI, `virtio0` on virtio.
    public var address: String
    public var vendor: String?
    public var device: String?
    public var deviceClass: String?
    /// What modules.alias patterns are matched against: `pci:v00001AF4d00001000…`.
    public var modalias: String?
    /// The driver bound to it, if any.
    public var driver: String?
    /// The network interfaces it provides (`eth0`).
    public var interfaces: [String]
    /// A PCI device's vendor and device names from libpci's database (hosted build only).
    public var vendorName: String?
    public var deviceName: String?

    /// Every device on the buses that load drivers by alias, read from `/sys/bus`.
    public static func scan(sysfs: String = "/sys") -> [Device] {
        var found: [Device] = []
        for bus in ["pci", "virtio"] {
            let dir = "\(sysfs)/bus/\(bus)/devices"
            for name in SysFS.list(dir) {
                let path = "\(dir)/\(name)"
                found.append(Device(
                    bus: bus, address: name,
                    vendor: SysFS.read("\(path)/vendor"), device: SysFS.read("\(path)/device"),
                    deviceClass: SysFS.read("\(path)/class"), modalias: SysFS.read("\(path)/modalias"),
                    driver: SysFS.linkName("\(path)/driver"), interfaces: SysFS.list("\(path)/net")))
                if bus == "pci" { (found[found.count - 1].vendorName, found[found.count - 1].deviceName) = pciNames(found[found.count - 1]) }
            }
        }
        // RDMA devices are a class, not a bus. A hardware one has a device and its driver; a software
        // one (Soft-RoCE) has neither, only the netdev it runs over (`parent`).
        for name in SysFS.list("\(sysfs)/class/infiniband") {
            let path = "\(sysfs)/class/infiniband/\(name)"
            found.append(Device(bus: "rdma", address: name, vendor: nil, device: nil, deviceClass: SysFS.read("\(path)/node_type"),
                                modalias: nil, driver: SysFS.linkName("\(path)/device/driver"),
                                interfaces: SysFS.read("\(path)/parent").map { [$0] } ?? []))
        }
        return found
    }
}

/// The names libpci's database gives a PCI device's IDs; nil where libpci is not available (the
/// static build) or the database does not know them.
func pciNames(_ d: Device) -> (vendor: String?, device: String?) {
    func id(_ s: String?) -> UInt32? { s.flatMap { UInt32($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) } }
    guard let vendor = id(d.vendor), let device = id(d.device) else { return (nil, nil) }
    var v = [CChar](repeating: 0, count: 256), n = [CChar](repeating: 0, count: 256)
    guard cpci_names(vendor, device, &v, v.count, &n, n.count) == 0 else { return (nil, nil) }
    func text(_ c: [CChar]) -> String? {
        let s = String(decoding: c.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return s.isEmpty ? nil : s
    }
    return (text(v), text(n))
}
