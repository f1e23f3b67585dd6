import Addresses
import ProcessKernel
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A DHCPv4 lease: what the server gave and for how long.
public struct DHCPLease: Sendable, Equatable {
    public var address: IPv4CIDR
    public var router: IPv4Address?
    public var server: IPv4Address
    public var leaseSeconds: UInt32
    /// When to renew (T1), by default half the lease.
    public var renewSeconds: UInt32
}

/// DHCPv4 messages (RFC 2131/2132): only what a client sends and reads.
enum DHCPMessage {
    static let magic: [UInt8] = [99, 130, 83, 99]

    /// DISCOVER (type 1) or REQUEST (type 3), broadcast flag set so the answer reaches a client
    /// that has no address yet.
    static func client(type: UInt8, xid: UInt32, mac: [UInt8], requested: IPv4Address? = nil, server: IPv4Address? = nil,
                       ciaddr: IPv4Address? = nil) -> [UInt8] {
        var m = [UInt8](repeating: 0, count: 236)
        m[0] = 1; m[1] = 1; m[2] = 6                        // BOOTREQUEST, Ethernet, 6-byte MAC
        m[4] = UInt8(xid >> 24); m[5] = UInt8(xid >> 16 & 0xff); m[6] = UInt8(xid >> 8 & 0xff); m[7] = UInt8(xid & 0xff)
        m[10] = 0x80                                          // broadcast flag
        if let ciaddr { m.replaceSubrange(12..<16, with: ciaddr.array) }
        m.replaceSubrange(28..<34, with: mac)
        m += magic
        m += [53, 1, type]
        m += [61, 7, 1] + mac                                 // client identifier
        if let requested { m += [50, 4] + requested.array }
        if let server { m += [54, 4] + server.array }
        m += [55, 4, 1, 3, 51, 58]                            // ask: mask, router, lease, T1
        m += [255]
        return m
    }

    /// Parses a server's BOOTREPLY for `xid`: its type and options.
    static func parse(_ b: [UInt8], xid: UInt32) -> (type: UInt8, yiaddr: IPv4Address, options: [UInt8: [UInt8]])? {
        guard b.count >= 240, b[0] == 2, Array(b[236..<240]) == magic,
              UInt32(b[4]) << 24 | UInt32(b[5]) << 16 | UInt32(b[6]) << 8 | UInt32(b[7]) == xid else { return nil }
        var options: [UInt8: [UInt8]] = [:]
        var i = 240
        while i < b.count {
            let code = b[i]
            if code == 255 { break }
            if code == 0 { i += 1; continue }
            guard i + 1 < b.count, i + 2 + Int(b[i + 1]) <= b.count else { return nil }
            options[code] = Array(b[(i + 2)..<(i + 2 + Int(b[i + 1]))])
            i += 2 + Int(b[i + 1])
        }
        guard let t = options[53]?.first else { return nil }
        return (t, IPv4Address(bytes: b[16..<20])!, options)  // four bytes: b.count >= 240
    }

    /// The shortest lease and time to renew taken from a server: the client sleeps for the time
    /// to renew between exchanges, so a 0 (or 1) from any host on the LAN would have it renew in
    /// a loop, at once, for as long as the node runs.
    static let minimumLeaseSeconds: UInt32 = 60
    static let minimumRenewSeconds: UInt32 = 30

    /// The lease an ACK grants; nil if it lacks a server identifier or its subnet mask is not one
    /// (four bytes, ones then zeros): a LAN host may send anything.
    static func lease(_ reply: (type: UInt8, yiaddr: IPv4Address, options: [UInt8: [UInt8]])) -> DHCPLease? {
        guard let server = reply.options[54].flatMap({ IPv4Address(bytes: $0) }) else { return nil }
        var mask = 24
        if let m = reply.options[1] {
            guard m.count == 4, let prefix = prefixLength(ofMask: m) else { return nil }
            mask = prefix
        }
        func u32(_ o: [UInt8]?) -> UInt32? { o.flatMap { $0.count == 4 ? UInt32($0[0]) << 24 | UInt32($0[1]) << 16 | UInt32($0[2]) << 8 | UInt32($0[3]) : nil } }
        let leaseTime = max(u32(reply.options[51]) ?? 3600, minimumLeaseSeconds)
        return DHCPLease(address: IPv4CIDR(address: reply.yiaddr, prefix: mask),
                         router: reply.options[3].flatMap { IPv4Address(bytes: $0.prefix(4)) },
                         server: server, leaseSeconds: leaseTime, renewSeconds: renewSeconds(u32(reply.options[58]), lease: leaseTime))
    }

    /// When to renew a lease of `lease` seconds: the server's T1, or half the lease if it gave
    /// none or one that is not before the lease ends; never sooner than `minimumRenewSeconds`.
    static func renewSeconds(_ t1: UInt32?, lease: UInt32) -> UInt32 {
        let renew = t1.flatMap { $0 < lease ? $0 : nil } ?? lease / 2
        return max(renew, minimumRenewSeconds)
    }
}

/// The prefix length of a subnet mask, if it is one: ones from the top, then only zeros.
func prefixLength(ofMask m: [UInt8]) -> Int? {
    let v = m.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let prefix = v.leadingZeroBitCount == 32 ? 0 : (~v).leadingZeroBitCount
    return prefix == 32 || v << prefix == 0 ? prefix : nil
}

/// Our DHCPv4 client. It speaks through a packet socket on the link (IP and UDP headers built
/// here) because before the lease the link has no address a UDP socket could use.
public enum DHCPClient {
    /// Gets a lease for `link`, configures it, and keeps renewing it in the background.
    public static func configure(_ link: Link, _ rt: RouteNetlink, note: @escaping @Sendable (String) -> Void) async {
        guard let mac = MAC.bytes(link.mac) else { note("DHCP: no MAC address"); return }
        let index = link.index, name = link.name
        // One exchange (retried after 1, 2 and 4 s) while booting; without an answer the boot goes
        // on and the lease is looked for in the background.
        guard let lease = await blocking({ exchange(ifindex: index, mac: mac, renewing: nil) }) else {
            note("DHCP: no answer in 7 s; still asking, every 10 s, in the background")
            Task { await keep(nil, index: index, name: name, mac: mac, note: note) }
            return
        }
        apply(lease, linkName: name, rt: rt, note: note)
        Task { await keep(lease, index: index, name: name, mac: mac, note: note) }
    }

    static func apply(_ lease: DHCPLease, linkName: String, rt: RouteNetlink, note: (String) -> Void) {
        do {
            let link = try rt.link(named: linkName)
            try rt.addAddress(lease.address, to: link)
            if let r = lease.router { try rt.setDefaultRoute(via: r, on: link) }
            note("DHCP: \(lease.address) from \(lease.server)\(lease.router.map { ", router \($0)" } ?? ""), lease \(lease.leaseSeconds) s")
        } catch { note("DHCP: \(error)") }
    }

    /// Renews at T1 (or retries every 10 s without a lease) for as long as the node runs.
    static func keep(_ first: DHCPLease?, index: Int32, name: String, mac: [UInt8], note: @escaping @Sendable (String) -> Void) async {
        var lease = first
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(Int(lease?.renewSeconds ?? 10)))
            let current = lease
            let renewed = await blocking { exchange(ifindex: index, mac: mac, renewing: current) }
            guard let renewed else { if lease != nil { note("DHCP: renewal unanswered; keeping \(lease!.address) and retrying") }; continue }
            if renewed != lease, let rt = try? RouteNetlink() {
                if let old = lease, old.address != renewed.address, let l = try? rt.link(named: name) { try? rt.removeAddress(old.address, from: l) }
                apply(renewed, linkName: name, rt: rt, note: note)
            }
            lease = renewed
        }
    }

    /// DISCOVER → OFFER → REQUEST → ACK, or, renewing, REQUEST → ACK. Blocking; nil on no answer.
    static func exchange(ifindex: Int32, mac: [UInt8], renewing: DHCPLease?) -> DHCPLease? {
        let ethIP: UInt16 = 0x0800
        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(ethIP.bigEndian))
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8].
        var ll = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { ll.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: ethIP.bigEndian) { ll.replaceSubrange(2..<4, with: $0) }
        withUnsafeBytes(of: ifindex) { ll.replaceSubrange(4..<8, with: $0) }
        ll[11] = 6
        for i in 12..<18 { ll[i] = 0xff }
        guard ll.withUnsafeBytes({ bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 20) }) == 0 else { return nil }

        func send(_ payload: [UInt8]) {
            let packet = udpPacket(payload)
            _ = packet.withUnsafeBytes { p in ll.withUnsafeBytes { a in
                sendto(fd, p.baseAddress, p.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), 20)
            } }
        }
        func receive(_ xid: UInt32, want: Set<UInt8>, timeoutMs: Int32) -> (type: UInt8, yiaddr: IPv4Address, options: [UInt8: [UInt8]])? {
            var buf = [UInt8](repeating: 0, count: 2048)
            // Measured from one start, so a LAN that keeps sending other packets cannot hold the
            // wait open (sub-millisecond polls each rounded down to no time at all did).
            let deadline = InitProcess.bootTime + .milliseconds(Int(timeoutMs))
            while true {
                let left = (deadline - InitProcess.bootTime).inMilliseconds
                guard left > 0 else { return nil }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, Int32(left.rounded(.up))) > 0 else { return nil }
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 28 else { continue }
                let ihl = Int(buf[0] & 0x0f) * 4
                guard buf[9] == 17, n > ihl + 8, buf[ihl + 2] == 0, buf[ihl + 3] == 68 else { continue }  // UDP to port 68
                if let r = DHCPMessage.parse(Array(buf[(ihl + 8)..<n]), xid: xid), want.contains(r.type) { return r }
            }
        }

        for timeout: Int32 in [1000, 2000, 4000] {
            let xid = UInt32.random(in: 1...UInt32.max)
            var offer: (address: IPv4Address, server: IPv4Address)
            if let renewing {
                offer = (renewing.address.address, renewing.server)
            } else {
                send(DHCPMessage.client(type: 1, xid: xid, mac: mac))
                guard let o = receive(xid, want: [2], timeoutMs: timeout), let s = o.options[54].flatMap({ IPv4Address(bytes: $0) }) else { continue }
                offer = (o.yiaddr, s)
            }
            send(DHCPMessage.client(type: 3, xid: xid, mac: mac, requested: renewing == nil ? offer.address : nil,
                                    server: renewing == nil ? offer.server : nil, ciaddr: renewing?.address.address))
            guard let ack = receive(xid, want: [5, 6], timeoutMs: timeout) else { continue }
            if ack.type == 6 { return nil }  // NAK: start over from DISCOVER next time
            return DHCPMessage.lease(ack)
        }
        return nil
    }

    /// IPv4 + UDP headers from 0.0.0.0:68 to 255.255.255.255:67 around a DHCP message.
    static func udpPacket(_ payload: [UInt8]) -> [UInt8] {
        let total = 20 + 8 + payload.count
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let check = ~UInt16(sum)
        ip[10] = UInt8(check >> 8); ip[11] = UInt8(check & 0xff)
        let udpLength = 8 + payload.count
        return ip + [0, 68, 0, 67, UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0] + payload
    }
}
