import Testing
import TestKit
@testable import DeviceDrivers
#if canImport(Glibc)
import Glibc
#endif

/// The module index read from a module tree written by the test (loading itself needs PID 1 in a
/// VM and is checked by the boot system test).
@Suite(.bounded) struct ModuleLoaderTests {
    func tree() throws -> String {
        var template = Array("/tmp/decos-modules-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        func write(_ name: String, _ text: String) {
            let fd = open("\(dir)/\(name)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            close(fd)
        }
        write("modules.dep", """
            kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
            kernel/drivers/virtio/virtio.ko:
            kernel/drivers/virtio/virtio_ring.ko:
            kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko
            kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko: kernel/drivers/infiniband/core/ib_core.ko
            kernel/fs/ext4/ext4.ko:
            kernel/crypto/crc32c_generic.ko:

            """)
        write("modules.alias", """
            # Aliases extracted from modules themselves.
            alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
            alias virtio:d00000001v* virtio_net
            alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
            alias crypto-crc32c crc32c_intel
            alias crypto-crc32c crc32c_generic

            """)
        write("modules.softdep", "softdep rdma_rxe pre: crc32_generic\nsoftdep ext4 pre: crypto-crc32c\n")
        write("modules.builtin", "kernel/net/packet/af_packet.ko\n")
        return dir
    }

    @Test func aliasesMatchDeviceModaliasesLikeModprobe() throws {
        let m = ModuleLoader(root: try tree())
        #expect(m.modules(for: "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00") == ["virtio_pci"])
        #expect(m.modules(for: "virtio:d00000001v00001AF4") == ["virtio_net"])
        #expect(m.modules(for: "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00") == ["e1000"])
        #expect(m.modules(for: "pci:v000015ADd00000740sv*") == [])
    }

    @Test func namesTreatDashAndUnderscoreAlikeAndKnowBuiltins() throws {
        let m = ModuleLoader(root: try tree())
        #expect(ModuleLoader.name(ofPath: "kernel/net/ipv6/ip6_udp-tunnel.ko.xz") == "ip6_udp_tunnel")
        #expect(m.knows("virtio-net"))
        #expect(m.knows("af_packet"))
        #expect(!m.knows("e1000"))  // aliased, but not carried by this tree
    }

    @Test func aModuleNotInTheImageIsRecordedAsMissing() throws {
        let m = ModuleLoader(root: try tree())
        #expect(m.load("mlx5_core", reason: "test") == false)
        #expect(m.loaded == [ModuleRecord(name: "mlx5_core", state: .missing, reason: "test", error: "not in this image's \(m.root)/modules.dep")])
        #expect(m.load("af_packet", reason: "test"))
        #expect(m.loaded.last?.state == .builtin)
    }

    /// ext4 wants `crypto-crc32c` first, an alias: the image's module for it is loaded before ext4
    /// (here the files are absent, so each load fails at open(2), before finit_module).
    @Test func aSoftDependencyThatIsAnAliasLoadsTheModuleProvidingIt() throws {
        let m = ModuleLoader(root: try tree())
        #expect(m.load("ext4", reason: "the data disk") == false)
        #expect(m.loaded.map(\.name) == ["crc32c_generic", "ext4"])  // crc32c_intel: not in this image
        #expect(m.loaded.first?.reason == "wanted before ext4 as crypto-crc32c")
    }
}
