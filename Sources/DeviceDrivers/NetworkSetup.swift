import ProcessKernel

/// Brings up the node's network as PID 1: loopback, then one Ethernet link with a static address
/// from the command line (`decos.ip`, `decos.gw`) or a DHCP lease. Every step and every failure is
/// reported through `note(link, text)`; nothing here stops the boot.
public enum NetworkSetup {
    public static func configure(_ p: BootParameters, dhcp: (Link, RouteNetlink) async -> Void,
                                 note: (String, String) -> Void) async {
        let rt: RouteNetlink
        do { rt = try RouteNetlink() } catch { note("*", "no rtnetlink: \(error)"); return }
        do {
            let lo = try rt.link(named: "lo")
            try rt.setLink(lo, up: true)
            try rt.addAddress(IPv4CIDR(address: IPv4Address(127, 0, 0, 1), prefix: 8), to: lo)
        } catch { note("lo", "loopback: \(error)") }
        // The NIC: the one named, else the first Ethernet link, waiting a little for its driver.
        var link: Link?
        for _ in 0..<50 {
            let links = (try? rt.links()) ?? []
            link = p.interface.map { n in links.first { $0.name == n } } ?? links.first { $0.hardwareType == 1 && !$0.loopback }
            if link != nil { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard var nic = link else {
            note(p.interface ?? "*", p.interface.map { "no link named \($0)" } ?? "no Ethernet link found: is the NIC's driver in the image (drivers/)?")
            return
        }
        do {
            try rt.setLink(nic, up: true, mtu: p.mtu)
            note(nic.name, "up" + (p.mtu.map { ", MTU \($0)" } ?? ""))
            nic = try rt.link(named: nic.name)
        } catch { note(nic.name, "\(error)"); return }
        guard let address = p.address else {
            await dhcp(nic, rt)
            return
        }
        do {
            try rt.addAddress(address, to: nic)
            note(nic.name, "address \(address) (decos.ip)")
            if let gw = p.gateway {
                try rt.setDefaultRoute(via: gw, on: nic)
                note(nic.name, "default route via \(gw) (decos.gw)")
            }
        } catch { note(nic.name, "\(error)") }
    }
}
