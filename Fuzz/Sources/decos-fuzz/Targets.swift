@testable import DeviceDrivers
@testable import DistributingKernel
@testable import Gateway
@testable import Infoset
import NIOCore
import NIOHTTP1
@testable import ProcessKernel
@testable import ServiceKernel
#if canImport(Glibc)
import Glibc
#endif

/// One fuzz target per decoder of outside input, chosen by `DECOS_FUZZ_TARGET`. Each takes any
/// bytes at all; an error is the expected answer to garbage, and anything else — a trap, an
/// address-sanitizer report, a hang, memory out of bounds — is a bug for libFuzzer to report.
let targets: [String: @Sendable ([UInt8]) -> Void] = [
    "xml": { b in _ = try? XMLReader.parse(b) },
    "soap": { b in _ = try? SOAP.decode(b) },
    "manifest": { b in _ = try? Manifest.parse(b, file: "fuzz.xml") },
    "cmdline": { b in
        let line = KernelCommandLine(String(decoding: b, as: UTF8.self))
        _ = BootParameters(line)
    },
    "infoset": { b in
        var r = ByteReader(b)
        _ = try? BinaryInfoset.decode(&r)
    },
    "message": { b in _ = try? Wire.decodeMessage(b) },
    "frames": { b in
        // The stream cut where its first byte says: frames split across reads must decode alike.
        var reader = FrameReader(maxFrame: 1 << 16)
        let cut = b.isEmpty ? 0 : Int(b[0]) % (b.count + 1)
        for part in [b[..<cut], b[cut...]] {
            var buffer = ByteBuffer(bytes: part)
            do { try reader.read(&buffer) { frame in _ = try? Wire.decodeMessage(frame.reader); return true } } catch { return }
        }
    },
    "hello": { b in _ = try? Handshake.Hello.decode(b) },
    "swim": { b in _ = try? Wire.decodeSWIM(b) },
    // A DIRECTORY frame's message as the namespace replica takes it from a live peer.
    "directory": { b in
        guard let message = try? NamespaceReplica.Message(decoding: b) else { return }
        var replica = NamespaceReplica(node: "a", firstVersion: 1 << 22)
        for from in ["b", "c"] { _ = replica.receive(message, from: from) { _ in true } }
        _ = replica.forget("b")
    },
    // The RDMA plane's control payloads and buffer descriptor, all from the same bytes.
    "rdma": { b in
        _ = try? RDMAWire.decodeConnect(b)
        _ = try? RDMAWire.decodeAccept(b)
        _ = try? RDMAWire.progress(b)
        _ = try? RDMAWire.descriptor(b)
    },
    // The AF_XDP plane: its descriptor and frame bodies from the same bytes, a frame's header
    // and body as received, and a sender's window taking an ACK decoded from them.
    "xdp": { b in
        _ = try? XDPWire.descriptor(b)
        _ = try? XDPWire.pull(b)
        _ = try? XDPWire.refusal(b)
        b.withUnsafeBytes { frame in
            for sealed in [false, true] {
                if let (h, _) = XDPWire.header(frame, sealed: sealed) { _ = XDPWire.body(frame, h, sealed: sealed) }
            }
        }
        if let ack = try? XDPWire.ack(b) {
            var window = XDPWindow(total: 1000)
            _ = window.take(now: 1, max: 64)
            window.ack(cumulative: ack.cumulative, sack: ack.sack, now: 2)
            _ = window.take(now: 3, max: 64)
            _ = window.expire(now: 1 << 40)
        }
    },
    "datagram": { b in
        // A datagram as the failure detector takes it: opened with the key, parsed (epoch,
        // sequence, addressee, SWIM), then passed through a replay window.
        var windows = ReplayWindows()
        for input in [fuzzKey.open(b), Array(b.dropFirst(min(2, b.count)))] {
            guard let opened = input, let d = MembershipDatagrams.parse(opened) else { continue }
            _ = windows.accept(from: d.from.name, epoch: d.epoch, sequence: d.sequence)
            windows.restart(d.from.name, epoch: d.sequence)
            _ = windows.accept(from: d.from.name, epoch: d.epoch, sequence: d.sequence)
        }
    },
    "http": { b in
        // What the gateway reads of a request's head before anything else (RequestGuard.swift):
        // lines of the input are its target, Host, Origin and Sec-Fetch-Site.
        let lines = b.split(separator: 0x0A, maxSplits: 3, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        func line(_ i: Int) -> String? { i < lines.count ? lines[i] : nil }
        var headers = HTTPHeaders()
        for (i, name) in ["host", "origin", "sec-fetch-site"].enumerated() { if let v = line(i + 1) { headers.add(name: name, value: v) } }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: line(0) ?? "/", headers: headers)
        _ = Gateway.site(of: head, tls: b.first.map { $0 & 1 == 1 } ?? false)
        let name = Gateway.hostName(line(1) ?? "")
        _ = Gateway.isIPLiteral(name)
        _ = Gateway.queryItems(head.uri)
        _ = Gateway.destination(String(head.uri.prefix { $0 != "?" && $0 != "#" }))
    },
    "dhcp": { b in
        if let reply = DHCPMessage.parse(b, xid: 7) { _ = DHCPMessage.lease(reply) }
    },
    "netlink": { b in
        var out: [NetlinkMessage] = []
        _ = try? NetlinkSocket.take(b, count: b.count, seq: 1, what: "fuzz", into: &out)
        for m in out { _ = m.attributes(after: min(16, m.payload.count)) }
    },
    "mtom": { b in
        // An MTOM body as the gateway reads it — cut into two reads where its first byte says —
        // then the message its parts make; and the console's form fields from the same bytes.
        _ = Gateway.formFields(b)
        guard var reader = try? MultipartReader(boundary: "fuzz", start: nil, limits: .init(rootBytes: 1 << 16, bufferBytes: 1 << 20),
                                                pool: fuzzPool) else { return }
        let cut = b.isEmpty ? 0 : Int(b[0]) % (b.count + 1)
        do throws(Fault) {
            try reader.feed(ByteBuffer(bytes: b[..<cut]))
            try reader.feed(ByteBuffer(bytes: b[cut...]))
            _ = try MTOM.message(reader.finish(), action: "urn:decos:verb:Submit")
        } catch {}
    },
    "modules": { b in
        // Three index files from one input, split at 0xFF bytes: modules.dep, .alias, .softdep.
        let parts = b.split(separator: 0xFF, maxSplits: 2, omittingEmptySubsequences: false)
        for (i, name) in ["modules.dep", "modules.alias", "modules.softdep"].enumerated() {
            let bytes = i < parts.count ? Array(parts[i]) : []
            let fd = open("\(fuzzRoot)/\(name)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        let loader = ModuleLoader(root: fuzzRoot)
        _ = loader.modules(for: "virtio:d00000001v00001AF4")
        _ = loader.knows("virtio_net")
    },
]

/// Pool memory for the MTOM target's parts: small, so a runaway would show as refusals.
let fuzzPool = BufferPool(limit: 64 << 20, keepFree: 0)

let fuzzKey = ClusterKey(Array("decos-fuzz-cluster-key-0123456789".utf8))

/// A directory of this process's own for the module index files.
let fuzzRoot: String = {
    let path = "/tmp/decos-fuzz-modules-\(getpid())"
    mkdir(path, 0o755)
    return path
}()

let chosen: @Sendable ([UInt8]) -> Void = {
    let name = getenv("DECOS_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = targets[name] else {
        print("decos-fuzz: set DECOS_FUZZ_TARGET to one of: \(targets.keys.sorted().joined(separator: " "))")
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    chosen(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// libFuzzer's driver, run from our own entry point: SwiftPM links an executable's `main` to the
/// module's (`decos_fuzz_main`), so libFuzzer's own `main` is not the one that runs.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("decos_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    if let seeds = getenv("DECOS_FUZZ_SEEDS") {
        writeSeeds(to: String(cString: seeds))
        return 0
    }
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
}

/// Writes each target's seed corpus into `directory`/TARGET/: valid inputs of every kind, made by
/// the encoders themselves, so the fuzzer starts from the shapes the decoders accept.
/// (`DECOS_FUZZ_SEEDS=DIR decos-fuzz`; scripts/fuzz.sh --seeds writes Fuzz/corpus.)
func writeSeeds(to directory: String) {
    func put(_ target: String, _ name: String, _ bytes: [UInt8]) {
        mkdir(directory, 0o755)
        mkdir("\(directory)/\(target)", 0o755)
        let fd = open("\(directory)/\(target)/\(name)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    let body = try! XMLReader.parse("<Entry xmlns=\"urn:x\" a=\"1\"><Key>k</Key><Value>  v &amp; w </Value><![CDATA[<raw>]]><!-- c --></Entry>")
    var m = Message(.upsert, to: "decos://b/kv", body: body, buffers: [BufferRef(id: "blob", buffer: DataBuffer([1, 2, 3]))])
    m.messageID = "urn:uuid:1"
    m.from = "decos://a/counter"
    var fault = Message.faulted(.timeout("late"), replyingTo: m)
    fault.fault?.detail = body
    put("xml", "entry", Array(XMLWriter.pretty(body).utf8))
    put("xml", "declared", Array("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<a xmlns:p=\"urn:p\"><p:b p:c=\"&#x41;\"/>text</a>".utf8))
    put("soap", "request", SOAP.encode(m))
    put("soap", "fault", SOAP.encode(fault))
    for (i, manifest) in ["../examples/node.xml", "../examples/greeter.xml"].enumerated() {
        if let bytes = readFile(manifest) { put("manifest", "example\(i)", bytes) }
    }
    put("cmdline", "full", Array("console=ttyS0 decos.node=n1 decos.http=0.0.0.0:7480 decos.listen=0.0.0.0:7950 decos.seed=10.0.2.2:7951,10.0.2.3:7951 decos.ip=10.0.2.15/24 decos.gw=10.0.2.2 decos.mtu=9000 decos.modules=e1000,rdma_rxe decos.rxe=eth0 decos.panic_delay=3 decos.log=debug decos.manifest=\"/etc/decos/a b.xml\"".utf8))
    var infoset = ByteWriter()
    BinaryInfoset.encode(body, into: &infoset)
    put("infoset", "entry", infoset.bytes)
    for (name, message) in [("request", m), ("fault", fault)] {
        var w = ByteWriter()
        Wire.encode(message, correlation: 7, offers: message.buffers.map { _ in Wire.Offer(plane: 1, descriptor: [0, 0, 0, 0, 0, 0, 0, 9]) }, into: &w)
        put("message", name, w.bytes)
        put("frames", name, Wire.Frame(.request, w.bytes).encoded() + Wire.Frame(.reply, w.bytes).encoded())
    }
    put("hello", "hello", Handshake.Hello(role: .control, node: "a", address: "10.0.0.1:7946", nonce: Handshake.nonce()).encoded())
    let me = Membership.Member(name: "a", address: "10.0.0.1:7946", incarnation: 3, status: .alive)
    let them = [Membership.Member(name: "b", address: "10.0.0.2:7946", incarnation: 1, status: .suspect, suspector: "c"),
                Membership.Member(name: "c", address: "10.0.0.3:7946", incarnation: 9, status: .dead)]
    let messages: [(String, Membership.Message)] = [
        ("ping", .ping(seq: 1, gossip: them)), ("pingreq", .pingReq(seq: 2, target: "b", targetAddress: "10.0.0.2:7946", gossip: them)),
        ("ack", .ack(seq: 1, gossip: [])), ("sync", .sync(members: [me] + them, reply: true)), ("gossip", .gossip(members: them)),
        ("nack", .nack(seq: 2)),
    ]
    let entry = DirectoryEntry(uri: "decos://b/kv", path: "/kv", contract: "urn:decos:examples:kv", node: "b")
    let namespace: [(String, NamespaceReplica.Message)] = [
        ("table", .table(owner: "b", version: 5, entries: [entry])), ("summary", .summary(count: 12, hash: 0xfeed)),
        ("digest", .digest([NamespaceReplica.Version("b", 5), NamespaceReplica.Version("c", 9)], reply: true)),
    ]
    for (name, message) in namespace { put("directory", name, message.encoded) }
    for (name, message) in messages {
        put("swim", name, Wire.encode(message, from: me))
        put("datagram", name, MembershipDatagrams.datagram(Wire.encode(message, from: me), epoch: me.epoch, sequence: 1, to: "b", key: fuzzKey))
    }
    // An endpoint: QPN 0x11, PSN 0x123456, the RoCEv2 GID of 10.77.2.1.
    let endpoint: [UInt8] = [0, 0, 0, 0x11, 0, 0x12, 0x34, 0x56] + [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 10, 77, 2, 1]
    put("rdma", "connect", endpoint)
    put("rdma", "accept", endpoint + [0, 0, 0, 0x12])
    put("rdma", "progress", RDMAWire.encode(RDMAWire.Progress(transfer: 3, bytes: 1 << 20, done: true)))
    put("rdma", "descriptor", RDMAWire.encode(RDMAWire.Descriptor(transfer: 3, address: 0x7F00_0000_0000, rkey: 0x1234)))
    put("xdp", "descriptor", XDPWire.encode(XDPWire.Descriptor(mac: [2, 0, 0, 0, 0, 1], queue: 0, transfer: 3, key: [UInt8](repeating: 7, count: 32))))
    put("xdp", "pull", XDPWire.encode(XDPWire.Pull(length: 1 << 20, chunk: 1464, node: "n1")))
    put("xdp", "ack", XDPWire.encode(XDPWire.Ack(cumulative: 40, sack: [0b1011, 0, 1 << 63])))
    var frame = [UInt8](repeating: 0, count: XDPWire.ethernetBytes + XDPWire.headerBytes + 8 + XDPWire.tagBytes)
    frame.withUnsafeMutableBytes { XDPWire.writeHeaders($0, to: [2, 0, 0, 0, 0, 2], from: [2, 0, 0, 0, 0, 1], XDPWire.Header(kind: .data, transfer: 3, sequence: 9, length: 8)) }
    put("xdp", "frame", frame)
    var ack = Array(DHCPMessage.client(type: 3, xid: 7, mac: [2, 0, 0, 0, 0, 1]).prefix(240))
    ack[0] = 2
    ack[16] = 10; ack[19] = 5
    ack += [53, 1, 5, 54, 4, 10, 0, 0, 1, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 51, 4, 0, 0, 14, 16, 58, 4, 0, 0, 7, 8, 255]
    put("dhcp", "ack", ack)
    var nl = NetlinkBuilder()
    nl.u32(16 + 16 + 8); nl.u16(16); nl.u16(2); nl.u32(1); nl.u32(0)       // RTM_NEWLINK, seq 1
    nl.bytes += [UInt8](repeating: 0, count: 16)
    nl.attribute(4, u32: 1500)                                              // IFLA_MTU
    nl.u32(20); nl.u16(2); nl.u16(0); nl.u32(1); nl.u32(0); nl.u32(0)      // NLMSG_ERROR 0: the ack
    put("netlink", "dump", nl.bytes)
    put("mtom", "echo", Array(("--fuzz\r\nContent-Type: application/xop+xml\r\n\r\n"
        + "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://www.w3.org/2005/08/addressing\" xmlns:d=\"urn:decos:soap\" "
        + "xmlns:xop=\"http://www.w3.org/2004/08/xop/include\"><e:Header><a:Action>urn:decos:verb:Submit</a:Action><d:Buffer id=\"b\">"
        + "<xop:Include href=\"cid:b@x\"/></d:Buffer></e:Header><e:Body><N><xop:Include href=\"cid:c%40x\"/></N></e:Body></e:Envelope>"
        + "\r\n--fuzz\r\nContent-ID: <b@x>\r\nContent-Length: 3\r\n\r\nabc\r\n--fuzz\r\nContent-ID: <c@x>\r\n\r\n\r\n--fuzz--\r\n").utf8))
    put("http", "form", Array("/counter?form&x=%41\n127.0.0.1:7480\nhttp://127.0.0.1:7480\nsame-origin".utf8))
    put("http", "rebinding", Array("/@b/os/power\nEvil.Example.:80\nhttp://evil.example\ncross-site".utf8))
    put("http", "v6", Array("/\n[::1]:7480".utf8))
    put("modules", "index", Array("kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\nkernel/net/core/failover.ko:\n".utf8) + [0xFF]
        + Array("alias virtio:d00000001v* virtio_net\nalias pci:v00008086d*sv*sd*bc02sc00i* e1000\n".utf8) + [0xFF]
        + Array("softdep virtio_net pre: failover post: x\n".utf8))
}
