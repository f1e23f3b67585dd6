import Foundation
import Decos
import Infoset
import ServiceKernel
import StandardServices
import Testing
import TestKit
#if canImport(Glibc)
import Glibc
#endif

func bootLocal(_ services: String = "") async throws -> Kernel {
    let m = try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\" node=\"t\">\(services)</Manifest>")
    return try await Node.boot(m).kernel
}

func xml(_ s: String) throws -> Element { try XMLReader.parse(s) }

@Suite(.bounded) struct DirectoryTests {
    @Test func listsEveryServiceWithItsNode() async throws {
        let k = try await bootLocal(#"<Service contract="urn:decos:examples:kv" name="/kv"/>"#)
        let list = try #require(try await k.call(.get, "/directory"))
        let paths = list.elements.compactMap { $0.child("Path")?.text }
        #expect(paths == ["/directory", "/constructor", "/manifestloader", "/os/node", "/os/processes", "/os/devices", "/os/links", "/os/modules", "/os/rdma", "/os/memory", "/os/storage", "/os/log", "/os/dataplane", "/os/cluster", "/kv"])
        #expect(list.elements.allSatisfy { $0.child("Node")?.text == "t" })
    }

    @Test func awaitingTheDirectoryWakesOnTheChangeAndTimesOutOtherwise() async throws {
        let k = try await bootLocal()
        // The service appears after the wait began: the wait ends on the directory's Insert.
        async let created: Void = { _ = try await k.create(ServiceConfig(contract: "urn:decos:examples:kv", name: "/late")) }()
        try await k.awaitDirectory(within: .seconds(60)) { $0.contains { $0.path == "/late" } }
        try await created
        // Nothing will ever list /never: the deadline ends the wait with a Timeout fault.
        do {
            try await k.awaitDirectory(within: .milliseconds(100)) { $0.contains { $0.path == "/never" } }
            Issue.record("the wait for /never ended without a fault")
        } catch {
            #expect(error.subcode?.local == "Timeout")
        }
    }

    @Test func findsByContractAndPath() async throws {
        let k = try await bootLocal(#"<Service contract="urn:decos:examples:kv" name="/kv"/><Service contract="urn:decos:examples:kv" name="/kv2"/><Service contract="urn:decos:examples:echo" name="/echo"/>"#)
        let byContract = try await k.call(.query, "/directory", body: xml("<DirectoryQuery><Contract>urn:decos:examples:kv</Contract></DirectoryQuery>"))
        #expect(byContract?.elements.compactMap { $0.child("Path")?.text } == ["/kv", "/kv2"])
        let byPath = try await k.call(.query, "/directory", body: xml("<DirectoryQuery><Path>/os/*</Path></DirectoryQuery>"))
        #expect(byPath?.elements.compactMap { $0.child("Path")?.text } == ["/os/node", "/os/processes", "/os/devices", "/os/links", "/os/modules", "/os/rdma", "/os/memory", "/os/storage", "/os/log", "/os/dataplane", "/os/cluster"])
    }

    @Test func subscribersSeeRegistrationsAndRemovals() async throws {
        let k = try await bootLocal()
        let changes = try k.subscribe("/directory", as: .system)
        try await k.create(ServiceConfig(contract: Echo.contract, name: "/e"))
        try await k.drop("/e")
        var seen: [String] = []
        for await n in changes {
            seen.append("\(n.verb.rawValue) \(n.body?.child("Path")?.text ?? "")")
            if seen.count == 2 { break }
        }
        #expect(seen == ["Insert /e", "Delete /e"])
    }
}

@Suite(.bounded) struct ConstructorTests {
    @Test func createsWithStateAndDrops() async throws {
        let k = try await bootLocal()
        let made = try await k.call(.create, "/constructor", body: xml("""
            <Create><Contract>urn:decos:examples:counter</Contract><Name>/c</Name>
            <State><CounterState><Value>41</Value></CounterState></State></Create>
            """))
        #expect(made?.child("Uri")?.text == "decos://t/c")
        #expect(try await k.call(.update, "/c", body: xml("<Increment><By>1</By></Increment>"))?.child("Value")?.text == "42")
        _ = try await k.call(.drop, "/constructor", body: xml("<Drop><Service>/c</Service></Drop>"))
        #expect(k.uris.lookup("/c") == nil)
    }

    @Test func systemServicesCannotBeDropped() async throws {
        let k = try await bootLocal()
        let viaConstructor = await k.send(Message(.drop, to: "/constructor", body: try xml("<Drop><Service>/directory</Service></Drop>")), as: .system)
        #expect(viaConstructor.fault?.subcode?.local == "Essential")
        let direct = await k.send(Message(.drop, to: "/directory"), as: .system)
        #expect(direct.fault?.subcode?.local == "ActionNotSupported")
        #expect(k.uris.lookup("/directory") != nil)
    }

    @Test func badRequestsAreFaults() async throws {
        let k = try await bootLocal()
        let unknown = await k.send(Message(.create, to: "/constructor", body: try xml("<Create><Contract>urn:none</Contract></Create>")), as: .system)
        #expect(unknown.fault?.subcode?.local == "UnknownContract")
        let badState = await k.send(Message(.create, to: "/constructor", body: try xml("<Create><Contract>urn:decos:examples:counter</Contract><State><CounterState><Value>x</Value></CounterState></State></Create>")), as: .system)
        #expect(badState.fault?.subcode?.local == "InvalidConfig")
        let badName = await k.send(Message(.create, to: "/constructor", body: try xml("<Create><Contract>urn:decos:examples:counter</Contract><Name>no-slash</Name></Create>")), as: .system)
        #expect(badName.fault?.code == .sender)
    }
}

@Suite(.bounded) struct ManifestLoaderTests {
    @Test func loadsAManifestFromTheBody() async throws {
        let k = try await bootLocal()
        let r = try await k.call(.submit, "/manifestloader", body: xml(#"<Manifest xmlns="urn:decos:manifest"><Service contract="urn:decos:examples:echo" name="/e1"/><Service contract="urn:decos:examples:kv" name="/k1"/></Manifest>"#))
        #expect(r?.elements.map(\.text) == ["decos://t/e1", "decos://t/k1"])
    }

    @Test func loadsAManifestFromAFile() async throws {
        let k = try await bootLocal()
        let path = "/tmp/decos-loader-\(getpid()).xml"
        let text = #"<Manifest xmlns="urn:decos:manifest"><Service contract="urn:decos:examples:echo" name="/from-file"/></Manifest>"#
        let f = fopen(path, "w")
        fputs(text, f)
        fclose(f)
        defer { unlink(path) }
        _ = try await k.call(.submit, "/manifestloader", body: xml("<LoadManifest><Path>\(path)</Path></LoadManifest>"))
        #expect(k.uris.lookup("/from-file") != nil)
        let missing = await k.send(Message(.submit, to: "/manifestloader", body: try xml("<LoadManifest><Path>/nonexistent.xml</Path></LoadManifest>")), as: .system)
        #expect(missing.fault?.subcode?.local == "NotFound")
    }

    @Test func allOrNothing() async throws {
        let k = try await bootLocal()
        let r = await k.send(Message(.submit, to: "/manifestloader", body: try xml(#"<Manifest xmlns="urn:decos:manifest"><Service contract="urn:decos:examples:echo" name="/ok"/><Service contract="urn:decos:examples:counter" name="/bad"><State><CounterState><Value>x</Value></CounterState></State></Service></Manifest>"#)), as: .system)
        #expect(r.fault != nil)
        #expect(k.uris.lookup("/ok") == nil)
    }

    @Test func cannotWidenSecurityOrNetwork() async throws {
        let k = try await bootLocal()
        let r = await k.send(Message(.submit, to: "/manifestloader", body: try xml(#"<Manifest xmlns="urn:decos:manifest"><Security><Allow principals="*"/></Security></Manifest>"#)), as: .system)
        #expect(r.fault?.reason.contains("<Security>") == true)
    }
}

@Suite(.bounded) struct ClusterServiceTests {
    @Test func aNodeWithoutAClusterListsItselfAlone() async throws {
        let k = try await bootLocal()
        let c = try #require(try await k.call(.get, "/os/cluster"))
        #expect(c.child("Node")?.text == "t")
        #expect(c.elements.filter { $0.name.local == "Member" }.map { [$0.child("Name")?.text, $0.child("Status")?.text] } == [["t", "alive"]])
    }
}

@Suite(.bounded) struct NodeServiceTests {
    @Test func describesTheProcess() async throws {
        let k = try await bootLocal()
        let s = try #require(try await k.call(.get, "/os/node"))
        #expect(s.child("Name")?.text == "t")
        #expect(s.child("Pid")?.text == String(getpid()))
        #expect((Int(s.child("ResidentBytes")?.text ?? "") ?? 0) > 1 << 20)
        #expect(s.child("Services")?.text == "14")
        #expect(s.child("Mode")?.text == "hosted")
    }
}

@Suite(.bounded) struct KeyValueTests {
    func entry(_ k: String, _ v: String? = nil) throws -> Element {
        try xml("<Entry><Key>\(k)</Key>\(v.map { "<Value>\($0)</Value>" } ?? "")</Entry>")
    }

    @Test func verbsKeepTheirMeaning() async throws {
        let k = try await bootLocal(#"<Service contract="urn:decos:examples:kv" name="/kv"/>"#)
        _ = try await k.call(.insert, "/kv", body: entry("a", "1"))
        #expect(await k.send(Message(.insert, to: "/kv", body: try entry("a", "2")), as: .system).fault?.subcode?.local == "Exists")
        #expect(await k.send(Message(.update, to: "/kv", body: try entry("b", "2")), as: .system).fault?.subcode?.local == "NotFound")
        _ = try await k.call(.update, "/kv", body: entry("a", "3"))
        _ = try await k.call(.upsert, "/kv", body: entry("ab", "4"))
        _ = try await k.call(.upsert, "/kv", body: entry("b", "5"))
        let q = try await k.call(.query, "/kv", body: xml("<KVQuery><Prefix>a</Prefix></KVQuery>"))
        #expect(q?.elements.map { "\($0.child("Key")!.text)=\($0.child("Value")!.text)" } == ["a=3", "ab=4"])
        #expect(try await k.call(.delete, "/kv", body: entry("a"))?.child("Value")?.text == "3")
        #expect(await k.send(Message(.delete, to: "/kv", body: try entry("a")), as: .system).fault?.subcode?.local == "NotFound")
        #expect(try await k.call(.get, "/kv")?.elements.count == 2)
    }
}

/// The `/os/*` services over the system under a hosted node.
@Suite(.bounded) struct OperatingSystemServicesTests {
    final class Presses: @unchecked Sendable {
        var actions: [String] = []
    }

    func boot(_ body: String = "", os: OperatingSystem = OperatingSystem()) async throws -> Node {
        try await Node.boot(try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\" node=\"t\">\(body)</Manifest>"), os: os)
    }

    @Test func poweroffAndRebootReachThePowerHandler() async throws {
        let os = OperatingSystem()
        let presses = Presses()
        os.onPower { presses.actions.append($0.rawValue) }
        let k = try await boot(os: os).kernel
        let reply = try await k.call(.submit, "/os/node", body: xml("<Poweroff/>"))
        #expect(reply?.child("Action")?.text == "poweroff")
        _ = try await k.call(.submit, "/os/node", body: xml("<Reboot/>"))
        #expect(presses.actions == ["poweroff", "reboot"])
        await #expect(throws: Fault.self) { try await k.call(.submit, "/os/node", body: xml("<Dance/>")) }
        #expect(presses.actions.count == 2)
    }

    @Test func withoutAPowerHandlerPowerIsAFaultNotACrash() async throws {
        let k = try await boot().kernel
        do {
            _ = try await k.call(.submit, "/os/node", body: xml("<Poweroff/>"))
            Issue.record("expected a fault")
        } catch let f as Fault {
            #expect(f.subcode?.local == "NotSupported")
        }
    }

    @Test func processesFromTheManifestAreSupervisedAndListed() async throws {
        let node = try await boot(#"<Process name="sleeper" path="/bin/sleep" restart="always"><Arg>1000</Arg></Process>"#)
        var entry: Element?
        for _ in 0..<200 {
            entry = try await node.kernel.call(.get, "/os/processes")?.elements.first
            if entry?.child("State")?.text == "running" { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(entry?.child("Name")?.text == "sleeper")
        #expect(entry?.child("State")?.text == "running")
        let pid = try #require(entry?.child("Pid").flatMap { Int32($0.text) })
        #expect(kill(pid, 0) == 0)
        await node.os.supervisor.stopAll(grace: .seconds(2))
        #expect(kill(pid, 0) != 0)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/lspci"), "needs pciutils' lspci (make deps installs it)"))
    func pciDevicesAreNamedAsLspciNamesThem() async throws {
        // lspci (pciutils, the same database through a client that is not ours) names each device;
        // the hosted build's /os/devices must name it alike.
        let lspci = Process(), out = Pipe()
        lspci.executableURL = URL(fileURLWithPath: "/usr/bin/lspci")
        lspci.arguments = ["-D", "-mm"]
        lspci.standardOutput = out
        try lspci.run()
        let listing = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        lspci.waitUntilExit()
        var names: [String: (vendor: String, device: String)] = [:]
        for line in listing.split(separator: "\n") {
            let quoted = line.split(separator: "\"").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            guard quoted.count >= 3 else { continue }
            names[String(line.prefix { $0 != " " })] = (quoted[1], quoted[2])
        }
        let devices = try #require(try await boot().kernel.call(.get, "/os/devices")).elements.filter { $0.child("Bus")?.text == "pci" }
        #expect(!devices.isEmpty && devices.count == names.count)
        for d in devices {
            let address = d.child("Address")?.text ?? ""
            let expected = try #require(names[address], "lspci does not list \(address)")
            // lspci falls back to "Device 1234" where the database has no name; /os/devices leaves it out.
            #expect(d.child("VendorName")?.text == expected.vendor, "\(address)")
            #expect(d.child("DeviceName")?.text ?? "Device \(d.child("Device")?.text.dropFirst(2) ?? "")" == expected.device, "\(address)")
        }
    }

    @Test func linksShowLoopbackWithItsAddress() async throws {
        let k = try await boot().kernel
        let links = try #require(try await k.call(.get, "/os/links"))
        let lo = try #require(links.elements.first { $0.child("Name")?.text == "lo" })
        #expect(lo.child("Address")?.text == "127.0.0.1/8")
        #expect(lo.child("Up")?.text == "true")
    }

    @Test func anRDMASelfTestOnAMissingDeviceIsAFaultNamingIt() async throws {
        let k = try await boot().kernel
        do {
            _ = try await k.call(.submit, "/os/rdma", body: xml("<ReadTest><Device>nosuch0</Device><Bytes>4096</Bytes></ReadTest>"))
            Issue.record("expected a fault")
        } catch let f as Fault {
            #expect(f.subcode?.local == "Verbs")
            #expect(f.reason.contains("no RDMA device nosuch0"))
        }
        await #expect(throws: Fault.self) { try await k.call(.submit, "/os/rdma", body: xml("<ReadTest><Device>x</Device><Bytes>0</Bytes></ReadTest>")) }
    }

    @Test func modulesSayHostedModeLeavesThemToTheHost() async throws {
        let k = try await boot().kernel
        let m = try #require(try await k.call(.get, "/os/modules"))
        #expect(m.child("Source")?.text.hasPrefix("host") == true)
        #expect(m.elements.filter { $0.name.local == "Module" }.isEmpty)
    }
}
