import Addresses
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
        // The primary NIC: the one named, else the first Ethernet link.
        let link = await waitForLink(rt) { l in p.interface.map { l.name == $0 } ?? (l.hardwareType == 1 && !l.loopback) }
        guard var nic = link else {
            note(p.interface ?? "*", p.interface.map { "no link named \($0)" } ?? "no Ethernet link found: is the NIC's driver in the image (drivers/)?")
            return
        }
        do {
            try rt.setLink(nic, up: true, mtu: p.mtu)
            note(nic.name, "up" + (p.mtu.map { ", MTU \($0)" } ?? ""))
            nic = try rt.link(named: nic.name)
        } catch { note(nic.name, "\(error)"); return }
        for (name, address) in p.linkAddresses {
            guard let link = await waitForLink(rt, { $0.name == name }) else { note(name, "no link named \(name) for decos.ip"); continue }
            do {
                try rt.setLink(link, up: true, mtu: p.mtu)
                try rt.addAddress(address, to: link)
                note(name, "up, address \(address) (decos.ip)")
            } catch { note(name, "\(error)") }
        }
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

    /// The first link `matches` accepts, waiting up to a second for drivers still probing.
    static func waitForLink(_ rt: RouteNetlink, _ matches: (Link) -> Bool) async -> Link? {
        for _ in 0..<50 {
            if let l = ((try? rt.links()) ?? []).first(where: matches) { return l }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}
