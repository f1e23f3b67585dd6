import DeviceDrivers
import Testing

/// What the AF_XDP plane asks of an interface: which one holds an address, and whether a peer's
/// address is on its subnet (raw frames reach it) or behind a router (they do not).
struct NetworkInterfaceTests {
    @Test func loopbackHoldsItsAddressAndItsSubnetIsOnLink() throws {
        #expect(NetworkInterface.holding(address: "127.0.0.1") == "lo")
        #expect(NetworkInterface.holding(address: "192.0.2.77") == nil)
        #expect(NetworkInterface.holding(address: "not an address") == nil)
        let lo = try #require(NetworkInterface("lo"))
        #expect(lo.isLoopback)
        #expect(lo.onLink("127.3.4.5"), "127.0.0.0/8 is lo's subnet")
        #expect(!lo.onLink("192.0.2.77"), "an address on no subnet of lo's is behind a router")
        #expect(!lo.onLink("lo"))
    }
}
