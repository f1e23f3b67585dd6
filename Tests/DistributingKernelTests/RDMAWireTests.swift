import CVerbs
@testable import DistributingKernel
import Infoset
import Testing
import TestKit

/// The RDMA plane's control payloads come from peers: each decodes what its encoder wrote, and
/// refuses what no queue pair could be (the checks a CONNECT's endpoint gets before a queue pair
/// is connected to it).
@Suite(.bounded) struct RDMAWireTests {
    func endpoint(qpn: UInt32 = 0x11, psn: UInt32 = 0x123456, gid: [UInt8] = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 10, 77, 2, 1]) -> dv_endpoint {
        var e = dv_endpoint()
        e.qpn = qpn
        e.psn = psn
        withUnsafeMutableBytes(of: &e.gid) { $0.copyBytes(from: gid) }
        return e
    }

    func same(_ a: dv_endpoint, _ b: dv_endpoint) -> Bool {
        a.qpn == b.qpn && a.psn == b.psn && withUnsafeBytes(of: a.gid) { x in withUnsafeBytes(of: b.gid) { y in x.elementsEqual(y) } }
    }

    @Test func whatIsWrittenIsRead() throws {
        let e = endpoint()
        #expect(same(try RDMAWire.decodeConnect(RDMAWire.connect(e)), e))
        let (accepted, answering) = try RDMAWire.decodeAccept(RDMAWire.accept(e, answering: 0xABCDEF))
        #expect(same(accepted, e) && answering == 0xABCDEF)
        let p = RDMAWire.Progress(transfer: 9, bytes: 1 << 30, done: true)
        #expect(try RDMAWire.progress(RDMAWire.encode(p)) == p)
        let d = RDMAWire.Descriptor(transfer: 4, address: 0x7F12_3456_7000, rkey: 0xDEAD_BEEF)
        #expect(try RDMAWire.descriptor(RDMAWire.encode(d)) == d)
    }

    @Test func endpointsNoQueuePairCouldHaveAreRefused() {
        for bad in [endpoint(qpn: 0), endpoint(qpn: 1), endpoint(qpn: 0x100_0000), endpoint(psn: 0x100_0000),
                    endpoint(gid: [UInt8](repeating: 0, count: 16))] {
            #expect(throws: ByteReader.Failure.self) { try RDMAWire.decodeConnect(RDMAWire.connect(bad)) }
        }
    }

    @Test func truncatedOrPaddedPayloadsAreRefused() {
        let connect = RDMAWire.connect(endpoint())
        let progress = RDMAWire.encode(RDMAWire.Progress(transfer: 1, bytes: 2, done: false))
        for bytes in [Array(connect.dropLast()), connect + [0], []] {
            #expect(throws: ByteReader.Failure.self) { try RDMAWire.decodeConnect(bytes) }
        }
        #expect(throws: ByteReader.Failure.self) { try RDMAWire.decodeAccept(connect) }
        #expect(throws: ByteReader.Failure.self) { try RDMAWire.progress(Array(progress.dropLast()) + [2]) }
        #expect(throws: ByteReader.Failure.self) { try RDMAWire.descriptor([1, 2, 3]) }
    }

    /// The receiver READs chunk by chunk at address + offset: a buffer said to run past the top
    /// of the address space is refused before anything is read, where the sum trapped.
    @Test func aBufferPastTheTopOfTheAddressSpaceIsRefused() throws {
        let length = 4 << 20
        func descriptor(at address: UInt64) -> [UInt8] { RDMAWire.encode(RDMAWire.Descriptor(transfer: 3, address: address, rkey: 1)) }
        for address in [UInt64.max, UInt64.max - UInt64(length) + 1, UInt64.max - 1 << 20] {
            #expect(throws: ByteReader.Failure.self, "at \(address)") { try RDMAWire.descriptor(descriptor(at: address), length: length) }
        }
        #expect(try RDMAWire.descriptor(descriptor(at: UInt64.max - UInt64(length)), length: length).address == UInt64.max - UInt64(length))
        #expect(try RDMAWire.descriptor(descriptor(at: UInt64.max), length: 0).address == UInt64.max)
    }
}
