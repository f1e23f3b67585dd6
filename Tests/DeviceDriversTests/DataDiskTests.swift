import Testing
import TestKit
@testable import DeviceDrivers
#if canImport(Glibc)
import Glibc
#endif

/// The data disk's safety rule, on files standing for disks: only a disk whose first MiB is all
/// zeros is formatted; an ext filesystem is kept; anything else is refused and left unchanged.
/// (Finding the disk and mounting it need PID 1 in a VM: VMTests boots one.)
@Suite(.bounded) struct DataDiskTests {
    static let mke2fs: String? = ["/sbin/mke2fs", "/usr/sbin/mke2fs"].first { (path: String) in access(path, X_OK) == 0 }

    /// A sparse file of `mib` MiB with `bytes` written at `offset`.
    func disk(mib: Int = 16, bytes: [UInt8] = [], at offset: Int = 0) throws -> String {
        var template = Array("/tmp/decos-disk-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(mib << 20)) == 0)
        if !bytes.isEmpty { try #require(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } == bytes.count) }
        return String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    func head(_ path: String) throws -> [UInt8] { try DataDisk.readHead(path).get() }

    @Test func contentsAreReadFromTheFirstMiB() {
        #expect(DataDisk.contents([UInt8](repeating: 0, count: 1 << 20)) == .blank)
        var ext = [UInt8](repeating: 0, count: 1 << 20)
        ext[1080] = 0x53; ext[1081] = 0xEF
        #expect(DataDisk.contents(ext) == .ext)
        var mbr = [UInt8](repeating: 0, count: 1 << 20)
        mbr[510] = 0x55; mbr[511] = 0xAA
        #expect(DataDisk.contents(mbr) == .other("an MBR partition table or a boot sector"))
        var gpt = mbr
        gpt.replaceSubrange(512..<520, with: Array("EFI PART".utf8))
        #expect(DataDisk.contents(gpt) == .other("a GPT partition table"))
        var one = [UInt8](repeating: 0, count: 1 << 20)
        one[(1 << 20) - 1] = 1  // the last byte of the first MiB is enough
        #expect(DataDisk.contents(one) == .other("data of a kind this node does not know"))
    }

    @Test(.enabled(if: mke2fs != nil, "no mke2fs on this machine"))
    func aBlankDiskIsFormattedOnceAndThenKept() throws {
        let path = try disk()
        defer { unlink(path) }
        #expect(DataDisk.formatIfBlank(path, mke2fs: Self.mke2fs!) == .success(true))
        #expect(DataDisk.contents(try head(path)) == .ext)
        // Formatted: the second time it is mounted as it is, not formatted again.
        let before = try head(path)
        #expect(DataDisk.formatIfBlank(path, mke2fs: Self.mke2fs!) == .success(false))
        #expect(try head(path) == before)
    }

    @Test func aDiskHoldingAnythingElseIsRefusedAndLeftAsItWas() throws {
        // One byte past the partition table's place, and data at the end of the first MiB.
        for (bytes, offset) in [([UInt8](arrayLiteral: 0x55, 0xAA), 510), ([1, 2, 3], (1 << 20) - 3)] {
            let path = try disk(bytes: bytes, at: offset)
            defer { unlink(path) }
            let before = try head(path)
            let result = DataDisk.formatIfBlank(path, mke2fs: Self.mke2fs ?? "/sbin/mke2fs")
            guard case .failure(.refused) = result else { Issue.record("\(result)"); continue }
            #expect(try head(path) == before)
        }
    }

    @Test func aMissingMke2fsIsAFailureNotAFormat() throws {
        let path = try disk()
        defer { unlink(path) }
        guard case .failure(.failed(let why)) = DataDisk.formatIfBlank(path, mke2fs: "/nonexistent/mke2fs") else {
            Issue.record("formatted without mke2fs"); return
        }
        #expect(why.contains("/nonexistent/mke2fs"))
        #expect(DataDisk.contents(try head(path)) == .blank)
    }

    /// A disk step that never ends does not hold the boot: past its limit the node goes on.
    @Test func aStepPastItsLimitIsGivenUpOn() throws {
        #expect(DataDisk.bounded(.seconds(5)) { 42 } == 42)
        #expect(DataDisk.bounded(.milliseconds(200)) { () -> Int in sleep(3); return 42 } == nil)
        let outcome = DataDisk.prepare("none", loader: ModuleLoader(root: "/tmp"), within: .seconds(5))
        #expect(outcome.description == "no data disk (decos.data=none): the node keeps nothing across restarts (durable services do not start)")
    }

    @Test func theMountedDeviceIsReadFromMountinfo() throws {
        let path = try disk(mib: 0, bytes: Array("""
            22 1 0:21 / / rw,relatime - rootfs rootfs rw
            31 22 254:0 / /data rw,nosuid,nodev,noatime shared:1 - ext4 /dev/vda rw
            32 22 0:5 / /dev rw - devtmpfs devtmpfs rw,mode=755

            """.utf8))
        defer { unlink(path) }
        #expect(DataDisk.mountedDevice(at: "/data", mountinfo: path) == "/dev/vda")
        #expect(DataDisk.mountedDevice(at: "/dev", mountinfo: path) == "devtmpfs")
        #expect(DataDisk.mountedDevice(at: "/srv", mountinfo: path) == nil)
    }

    @Test func outcomesSayWhatHappenedInOneLine() {
        let first = DataDisk.Outcome.mounted(device: "/dev/vda", size: "256 MiB", formatted: true, milliseconds: 800)
        let second = DataDisk.Outcome.mounted(device: "/dev/vda", size: "256 MiB", formatted: false, milliseconds: 90)
        #expect(first.description.contains("formatted ext4 and mounted at /data"))
        #expect(!second.description.contains("formatted") && second.description.contains("mounted at /data"))
        #expect(first.storage == "/data" && DataDisk.Outcome.none(why: "decos.data=none").storage == nil)
        for o in [first, second, .none(why: "x"), .refused(device: "/dev/vda", size: "1 MiB", holds: "y"), .failed(device: "/dev/vda", why: "z")] {
            #expect(!o.description.contains("\n"))
        }
    }
}
