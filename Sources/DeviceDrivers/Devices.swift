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
