@testable import DeviceDrivers
import Testing
import TestKit

/// Netlink answers are parsed with every length checked; what fuzzing found stays fixed.
@Suite(.bounded) struct NetlinkTests {
    /// One message: length, type, flags, sequence 1, port 0, then `payload`.
    func message(type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var b = NetlinkBuilder()
        b.u32(UInt32(16 + payload.count)); b.u16(type); b.u16(0); b.u32(1); b.u32(0)
        return b.bytes + payload
    }

    @Test func anErrorCodeOfInt32MinIsAnErrorNotATrap() {
        // Found by `make fuzz` (netlink target): the kernel sends −errno, and −Int32.min traps.
        let answer = message(type: 2, [0, 0, 0, 0x80] + [UInt8](repeating: 0, count: 16))
        var out: [NetlinkMessage] = []
        #expect(throws: NetlinkError.self) { try NetlinkSocket.take(answer, count: answer.count, seq: 1, what: "test", into: &out) }
    }

    @Test func truncatedAndOverlongMessagesEndTheParseWithoutReadingPastIt() throws {
        var out: [NetlinkMessage] = []
        var overlong = message(type: 16, [1, 2, 3, 4])
        overlong[0] = 200  // claims more than the datagram holds
        #expect(try NetlinkSocket.take(overlong, count: overlong.count, seq: 1, what: "test", into: &out) == false)
        #expect(out.isEmpty)
        let shortError = message(type: 2, [])
        #expect(throws: NetlinkError.self) { try NetlinkSocket.take(shortError, count: shortError.count, seq: 1, what: "test", into: &out) }
        // An attribute whose length runs past the message is not taken.
        let m = NetlinkMessage(type: 16, payload: [8, 0, 4, 0, 1, 2])
        #expect(m.attributes(after: 0).isEmpty)
    }
}
