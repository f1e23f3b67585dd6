import Addresses
@testable import DeviceDrivers
import ProcessKernel
import Testing
import TestKit

/// DHCP replies come from any host on the LAN: whatever they hold, the client gets a lease or
/// nothing, never a trap.
@Suite(.bounded) struct DHCPTests {
    /// A BOOTREPLY for `xid` offering 10.0.0.5, with `options` (code → value) after the magic cookie.
    func reply(xid: UInt32 = 7, _ options: [(UInt8, [UInt8])]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 236)
        b[0] = 2
        b[4] = UInt8(xid >> 24); b[5] = UInt8(xid >> 16 & 0xff); b[6] = UInt8(xid >> 8 & 0xff); b[7] = UInt8(xid & 0xff)
        b[16] = 10; b[19] = 5
        b += DHCPMessage.magic
        for (code, value) in options { b += [code, UInt8(value.count)] + value }
        return b + [255]
    }

    func lease(_ options: [(UInt8, [UInt8])]) -> DHCPLease? {
        DHCPMessage.parse(reply(options), xid: 7).flatMap(DHCPMessage.lease)
    }

    @Test func aWellFormedAckGivesItsLease() throws {
        let l = try #require(lease([(53, [5]), (54, [10, 0, 0, 1]), (1, [255, 255, 255, 0]), (3, [10, 0, 0, 1]), (51, [0, 0, 0x0e, 0x10])]))
        #expect(l.address.description == "10.0.0.5/24")
        #expect(l.router?.description == "10.0.0.1")
        #expect(l.leaseSeconds == 3600)
    }

    @Test func aMaskOfManyOnesIsRefusedNotMadeAPrefixOver255() {
        // Counting set bits gave 256 for this, and UInt8(256) trapped when the address was added.
        #expect(lease([(53, [5]), (54, [10, 0, 0, 1]), (1, [UInt8](repeating: 0xFF, count: 32))]) == nil)
        #expect(lease([(53, [5]), (54, [10, 0, 0, 1]), (1, [255, 0, 255, 0])]) == nil)
        #expect(lease([(53, [5]), (54, [10, 0, 0, 1]), (1, [255, 255, 255, 255])])?.address.prefix == 32)
        #expect(lease([(53, [5]), (54, [10, 0, 0, 1]), (1, [0, 0, 0, 0])])?.address.prefix == 0)
    }

    @Test func shortAddressesAreRefusedNotTrappedOn() {
        #expect(lease([(53, [5]), (54, [10, 0])]) == nil)
        #expect(lease([(53, [5]), (54, [10, 0, 0, 1]), (3, [10])])?.router == nil)
        #expect(IPv4Address(bytes: [1, 2, 3]) == nil)
        #expect(IPv4Address(bytes: [1, 2, 3, 4, 5]) == nil)
    }

    @Test func truncatedAndForeignRepliesAreIgnored() {
        var truncated = reply([(53, [5]), (54, [10, 0, 0, 1])])
        truncated[244] = 200  // the server option claims more bytes than follow
        #expect(DHCPMessage.parse(truncated, xid: 7) == nil)
        #expect(DHCPMessage.parse(reply([(53, [5])]), xid: 8) == nil)
        #expect(DHCPMessage.parse(Array(reply([(53, [5])]).prefix(100)), xid: 7) == nil)
    }
}

extension DHCPTests {
    /// The client sleeps for the time to renew between exchanges: a lease or T1 of 0 (or one
    /// past the lease) from a LAN host must not have it renew at once, in a loop, forever.
    @Test func leaseAndRenewalTimesOfZeroAreRaisedSoRenewingNeverSpins() throws {
        let server: (UInt8, [UInt8]) = (54, [10, 0, 0, 1])
        let zeroLease = try #require(lease([(53, [5]), server, (51, [0, 0, 0, 0])]))
        #expect(zeroLease.leaseSeconds >= 60)
        #expect(zeroLease.renewSeconds >= 30)
        let zeroRenew = try #require(lease([(53, [5]), server, (51, [0, 0, 0x0e, 0x10]), (58, [0, 0, 0, 0])]))
        #expect(zeroRenew.leaseSeconds == 3600)
        #expect(zeroRenew.renewSeconds >= 30)
        // A T1 at or past the end of the lease would renew too late: half the lease instead.
        let lateRenew = try #require(lease([(53, [5]), server, (51, [0, 0, 0x0e, 0x10]), (58, [0xFF, 0xFF, 0xFF, 0xFF])]))
        #expect(lateRenew.renewSeconds == 1800)
        // What a sane server says is kept as it is.
        let sane = try #require(lease([(53, [5]), server, (51, [0, 0, 0x0e, 0x10]), (58, [0, 0, 0x03, 0x84])]))
        #expect(sane.leaseSeconds == 3600 && sane.renewSeconds == 900)
    }
}
