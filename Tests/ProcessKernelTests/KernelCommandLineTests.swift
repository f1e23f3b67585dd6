import Addresses
import Testing
import TestKit
@testable import ProcessKernel

@Suite(.bounded) struct KernelCommandLineTests {
    @Test func takesOnlyDecosWordsAndKeepsQuotedSpaces() {
        let line = KernelCommandLine("console=ttyS0 quiet decos.node=alpha decos.manifest=\"/etc/decos/a b.xml\" root=/dev/sda decos.seed=10.0.0.1:7950\n")
        #expect(line["node"] == "alpha")
        #expect(line["manifest"] == "/etc/decos/a b.xml")
        #expect(line["root"] == nil)
        #expect(line.parameters.count == 3)
    }

    @Test func validValuesAreUsed() {
        let p = BootParameters(KernelCommandLine(
            "decos.node=n1 decos.http=0.0.0.0:7480 decos.listen=0.0.0.0:7950 decos.seed=10.0.2.2:7951,10.0.2.3:7951 decos.ip=10.0.2.15/24 decos.gw=10.0.2.2 decos.mtu=9000 decos.modules=e1000,rdma_rxe decos.rxe=eth0 decos.dataplane=rdma,tcp decos.panic_delay=3 decos.log=debug"))
        #expect(p.errors == [])
        #expect(p.node == "n1")
        #expect(p.http == "0.0.0.0:7480")
        #expect(p.seeds == ["10.0.2.2:7951", "10.0.2.3:7951"])
        #expect(p.address == IPv4CIDR("10.0.2.15/24"))
        #expect(p.gateway == IPv4Address(10, 0, 2, 2))
        #expect(p.mtu == 9000)
        #expect(p.modules == ["e1000", "rdma_rxe"])
        #expect(p.rxe == ["eth0"])
        #expect(p.dataPlanes == "rdma,tcp")
        #expect(p.panicDelay == 3)
        #expect(p.logLevel == "debug")
    }

    @Test func badValuesAreReportedAndTheRestStillApplies() {
        let p = BootParameters(KernelCommandLine("decos.node=ok decos.ip=10.0.2.300/24 decos.http=nope decos.mtu=12 decos.colour=blue decos.manifest=relative.xml"))
        #expect(p.node == "ok")
        #expect(p.address == nil)
        #expect(p.http == nil)
        #expect(p.mtu == nil)
        #expect(p.manifest == "/etc/decos/node.xml")
        #expect(p.errors.count == 5)
        #expect(p.errors.contains { $0.hasPrefix("decos.ip=10.0.2.300/24:") })
        #expect(p.errors.contains { $0.hasPrefix("decos.colour: unknown parameter") })
    }

    @Test func addressesParseStrictly() {
        #expect(IPv4Address("192.168.1.1")?.description == "192.168.1.1")
        #expect(IPv4Address("1.2.3") == nil)
        #expect(IPv4Address("1.2.3.4.5") == nil)
        #expect(IPv4Address("1..3.4") == nil)
        #expect(IPv4CIDR("10.0.0.1/33") == nil)
        #expect(IPv4CIDR("10.0.0.1/8")?.prefix == 8)
    }
}

@Suite(.bounded) struct DataDiskParameterTests {
    @Test func theDataDiskIsADeviceOrNone() {
        #expect(BootParameters(KernelCommandLine("")).data == nil)
        #expect(BootParameters(KernelCommandLine("decos.data=/dev/vdb")).data == "/dev/vdb")
        #expect(BootParameters(KernelCommandLine("decos.data=none")).data == "none")
        let bad = BootParameters(KernelCommandLine("decos.data=vdb decos.data=/dev/ decos.data=/dev/../etc/x"))
        #expect(bad.data == nil)
        #expect(bad.errors.count == 3)
        #expect(bad.errors.first == "decos.data=vdb: expected a block device (/dev/vdb) or none; ignored")
    }
}

@Suite(.bounded) struct LinkAddressTests {
    @Test func furtherLinksTakeStaticAddressesByName() {
        let p = BootParameters(KernelCommandLine("decos.ip=dhcp decos.ip=eth1:10.77.1.2/24 decos.ip=eth2:bad"))
        #expect(p.address == nil)
        #expect(p.linkAddresses.map(\.link) == ["eth1"])
        #expect(p.linkAddresses.first?.address == IPv4CIDR("10.77.1.2/24"))
        #expect(p.errors.count == 1)
    }
}
