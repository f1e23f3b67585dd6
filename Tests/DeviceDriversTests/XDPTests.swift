import DeviceDrivers
import Foundation
import Testing
import TestKit

/// Root, iproute2 and a kernel with AF_XDP: what a veth pair in a namespace needs (CI has them).
let canUseXDP = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")

/// What Glibc's Swift module leaves out: <linux/if_packet.h>'s address, ETH_P_ALL, and setns(2)
/// (a GNU extension), found at run time.
struct PacketAddress {
    var family = UInt16(AF_PACKET)
    var ethertype: UInt16 = UInt16(0x0003).bigEndian  // ETH_P_ALL
    var ifindex: Int32 = 0
    var hatype: UInt16 = 0
    var pkttype: UInt8 = 0
    var halen: UInt8 = 0
    var address: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
}
let setns = unsafeBitCast(dlsym(nil, "setns"), to: (@convention(c) (Int32, Int32) -> Int32).self)
let cloneNewNet: Int32 = 0x4000_0000

/// The XDP program and AF_XDP socket on a real veth pair: the peer sits in a network namespace
/// of its own, and everything it sends crosses the program.
@Suite(.bounded, .ownThreads, .serialized, .enabled(if: canUseXDP, "needs root and iproute2 for a veth pair in a namespace"))
struct XDPTests {
    static let ours: UInt16 = 0x88B5, theirs: UInt16 = 0x88B6

    func ip(_ args: String...) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        p.arguments = args
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XDPError(description: "ip \(args.joined(separator: " ")) failed") }
    }

    /// Runs `body` on a thread that has entered namespace `ns`: sockets it makes belong there.
    func inNamespace<T: Sendable>(_ ns: String, _ body: @escaping @Sendable () -> T) -> T {
        nonisolated(unsafe) var result: T?  // written by the thread, read after it is joined
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let fd = open("/var/run/netns/\(ns)", O_RDONLY)
            _ = setns(fd, cloneNewNet)
            close(fd)
            result = body()
            done.signal()
        }
        thread.start()
        done.wait()
        return result!
    }

    /// A raw packet socket bound to `interface` (in the calling thread's namespace).
    static func packetSocket(_ interface: String) -> Int32 {
        var addr = PacketAddress()
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue), Int32(addr.ethertype))
        addr.ifindex = Int32(if_nametoindex(interface))
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<PacketAddress>.size)) } }
        return fd
    }

    /// Waits until `fd` has something to read or `deadline` passes; false at the deadline.
    static func readable(_ fd: Int32, by deadline: ContinuousClock.Instant) -> Bool {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000) + 1) > 0
    }

    static func frame(to mac: [UInt8], type: UInt16, _ payload: String) -> [UInt8] {
        mac + [2, 0, 0, 0, 0, 9] + [UInt8(type >> 8), UInt8(type & 0xFF)] + Array(payload.utf8) + [UInt8](repeating: 0, count: 32)
    }

    @Test func ourEtherTypeGoesToTheSocketAndEverythingElseToTheKernelStack() throws {
        let tag = getpid() % 100_000
        let a = "dxa\(tag)", b = "dxb\(tag)", ns = "decos-xdp-\(tag)"
        try ip("netns", "add", ns)
        defer { try? ip("link", "del", a); try? ip("netns", "del", ns) }
        try ip("link", "add", a, "type", "veth", "peer", "name", b, "netns", ns)
        try ip("addr", "add", "10.203.\(tag % 200).1/24", "dev", a)
        try ip("link", "set", a, "up")
        try ip("-n", ns, "addr", "add", "10.203.\(tag % 200).2/24", "dev", b)
        try ip("-n", ns, "link", "set", b, "up")
        let mac = try String(contentsOfFile: "/sys/class/net/\(a)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").map { UInt8($0, radix: 16)! }

        let umem = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { umem.deallocate() }
        let filter = try XDPFilter(interface: a, ethertype: Self.ours, queues: 1)
        let xsk = try XDPSocket(filter: filter, queue: 0, umem: umem, frameSize: 4096, ring: 512)
        #expect(xsk.fill((0..<512).map { UInt64($0 * 4096) }) == 512)
        // What reaches the kernel's stack on `a`, and an IPv4 service there.
        let tap = Self.packetSocket(a)
        defer { close(tap) }
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        defer { close(udp) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = UInt16(47_000 + tag % 1000).bigEndian
        local.sin_addr.s_addr = inet_addr("10.203.\(tag % 200).1")
        _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }

        // From inside the namespace: 50 frames of ours, 50 of another EtherType, 5 UDP datagrams.
        let target = local
        inNamespace(ns) {
            let raw = Self.packetSocket(b)
            for i in 0..<50 {
                for (type, text) in [(Self.ours, "decos \(i)"), (Self.theirs, "other \(i)")] {
                    let f = Self.frame(to: mac, type: type, text)
                    _ = f.withUnsafeBytes { Glibc.send(raw, $0.baseAddress, $0.count, 0) }
                }
            }
            close(raw)
            let out = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var to = target
            for i in 0..<5 {
                let text = Array("datagram \(i)".utf8)
                // The first waits for ARP (which crosses the program too); the kernel queues the rest.
                _ = withUnsafePointer(to: &to) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(out, text, text.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            close(out)
        }

        // Our 50 arrive on the socket, whole and in order; none of the others does.
        var got: [String] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while got.count < 50 && ContinuousClock.now < deadline {
            for (offset, length) in xsk.received() {
                let bytes = UnsafeRawBufferPointer(rebasing: umem[Int(offset)..<Int(offset) + length])
                #expect(bytes[12] == 0x88 && bytes[13] == 0xB5)
                got.append(String(decoding: bytes[14...].prefix { $0 != 0 }, as: UTF8.self))
                xsk.fill([offset])
            }
            if got.count < 50 { _ = xsk.wait(milliseconds: 100) }
        }
        #expect(got == (0..<50).map { "decos \($0)" })
        #expect(filter.mode == "native" || filter.mode == "generic")

        // The kernel saw the other EtherType and the IPv4 traffic, and none of ours.
        var seen: [UInt16: Int] = [:]
        var buffer = [UInt8](repeating: 0, count: 2048)
        while seen[Self.theirs, default: 0] < 50, Self.readable(tap, by: deadline + .seconds(5)) {
            let n = recv(tap, &buffer, buffer.count, 0)
            if n >= 14 { seen[UInt16(buffer[12]) << 8 | UInt16(buffer[13]), default: 0] += 1 }
        }
        #expect(seen[Self.theirs] == 50, "\(seen)")
        #expect(seen[Self.ours] == nil, "\(seen)")
        var datagrams = 0
        while datagrams < 5, Self.readable(udp, by: deadline + .seconds(5)) {
            if recv(udp, &buffer, buffer.count, 0) > 0 { datagrams += 1 }
        }
        #expect(datagrams == 5)

        // And the other way: ten frames sent from the socket, each from a frame of its own,
        // reach the namespace whole, and every frame comes back as completed to be used again.
        let listener = inNamespace(ns) { Self.packetSocket(b) }
        defer { close(listener) }
        let sent = (0..<10).map { UInt64((600 + $0) * 4096) }
        for (i, offset) in sent.enumerated() {
            let f = Self.frame(to: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], type: Self.ours, "sent \(i)")
            UnsafeMutableRawBufferPointer(rebasing: umem[Int(offset)...]).copyBytes(from: f)
        }
        #expect(xsk.send(sent.map { ($0, 60) }) == 10)
        var arrived: Set<String> = [], completed: [UInt64] = []
        while arrived.count < 10 || completed.count < 10, Self.readable(listener, by: deadline + .seconds(10)) || completed.count < 10 {
            completed += xsk.completed()
            while Self.readable(listener, by: .now + .milliseconds(1)) {
                let n = recv(listener, &buffer, buffer.count, 0)
                if n >= 14, buffer[12] == 0x88, buffer[13] == 0xB5 { arrived.insert(String(decoding: buffer[14..<n].prefix { $0 != 0 }, as: UTF8.self)) }
            }
            if ContinuousClock.now > deadline + .seconds(10) { break }
        }
        #expect(arrived == Set((0..<10).map { "sent \($0)" }))
        #expect(completed.sorted() == sent, "the frames given back are the ones sent")
    }
}
