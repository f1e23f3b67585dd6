import DistributingKernel
import Infoset
import ServiceKernel
import Testing
import TestKit

@Suite(.bounded) struct WireTests {
    @Test func binaryInfosetRoundTrips() throws {
        let e = try XMLReader.parse(#"<a:r xmlns:a="urn:a" x="1"><b>t &amp; u</b><a:c y="2"/><b>v</b></a:r>"#)
        var r = ByteReader(BinaryInfoset.encode(e))
        #expect(try BinaryInfoset.decode(&r) == e)
        #expect(r.isAtEnd)
    }

    @Test func manyDistinctNamesAndNonASCIITextRoundTrip() throws {
        // More names than the encoder's linear table holds: it moves them to a dictionary midway.
        let children = (0..<40).map { i in Content.element(Element(QName("urn:n\(i % 3)", "e\(i)"), attributes: [Attribute(QName("", "a\(i)"), "v")], children: [.text("ü\(i)€")])) }
        let e = Element(QName("urn:root", "root"), children: children)
        let bytes = BinaryInfoset.encode(e)
        var r = ByteReader(bytes)
        #expect(try BinaryInfoset.decode(&r) == e)
        // Each name is sent once however often it is used.
        let ns = Array("urn:n1".utf8)
        let uses = (0...(bytes.count - ns.count)).filter { bytes[$0..<$0 + ns.count].elementsEqual(ns) }.count
        #expect(uses == 1)
        // A string that is not UTF-8 is refused, ASCII fast path or not.
        var bad = ByteWriter()
        bad.data([0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0xFF])
        var b = ByteReader(bad.bytes)
        #expect(throws: ByteReader.Failure.self) { try b.string() }
    }

    @Test func messagesRoundTripWithBufferReferences() throws {
        var m = Message(.update, to: "decos://b/kv", body: Element("Entry", children: [.element(Element("Key", text: "k"))]),
                        buffers: [BufferRef(id: "b1", buffer: DataBuffer([1, 2, 3]))])
        m.messageID = "urn:uuid:1"
        m.from = "/caller"
        var w = ByteWriter()
        Wire.encode(m, correlation: 99, offers: [Wire.Offer(plane: 1, descriptor: [0, 0, 0, 0, 0, 0, 0, 7])], into: &w)
        let back = try Wire.decodeMessage(w.bytes)
        #expect(back.correlation == 99)
        #expect(back.message.verb == .update && back.message.to == m.to && back.message.from == "/caller")
        #expect(back.message.body == m.body)
        #expect(back.buffers.count == 1 && back.buffers[0].id == "b1" && back.buffers[0].length == 3 && back.buffers[0].offer == Wire.Offer(plane: 1, descriptor: [0, 0, 0, 0, 0, 0, 0, 7]))
        // The bytes themselves are not in the control part.
        #expect(!w.bytes.contains([1, 2, 3]))
    }

    @Test func faultsRoundTrip() throws {
        var m = Message(.get, to: "", kind: .fault)
        m.fault = Fault(.sender, "UnknownService", "no service at /x", detail: Element("D"))
        var w = ByteWriter()
        Wire.encode(m, correlation: 1, offers: [], into: &w)
        #expect(try Wire.decodeMessage(w.bytes).message.fault == m.fault)
    }

    @Test func truncatedAndHostileInputIsAnErrorNotACrash() throws {
        var m = Message(.submit, to: "/echo", body: Element("X", text: String(repeating: "y", count: 100)))
        m.messageID = "id"
        var w = ByteWriter()
        Wire.encode(m, correlation: 5, offers: [], into: &w)
        for cut in 0..<w.bytes.count {
            #expect(throws: ByteReader.Failure.self) { try Wire.decodeMessage(Array(w.bytes[0..<cut])) }
        }
        // A count claiming more than the frame holds is refused before any allocation.
        var huge = ByteWriter()
        huge.varint(UInt64(Int32.max))
        var r = ByteReader(huge.bytes)
        #expect(throws: ByteReader.Failure.self) { try BinaryInfoset.decode(&r) }
        var g = SplitMix(seed: 3)
        for _ in 0..<2000 {
            let junk = (0..<Int(g.next() % 64)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            _ = try? Wire.decodeMessage(junk)
            _ = try? Wire.decodeSWIM(junk)
        }
    }

    @Test func membershipMessagesRoundTrip() throws {
        let me = Membership.Member(name: "a", address: "127.0.0.1:1", incarnation: 3, status: .alive)
        let other = Membership.Member(name: "b", address: "127.0.0.1:2", incarnation: 1, status: .suspect)
        for m in [Membership.Message.ping(seq: 1, gossip: [other]), .pingReq(seq: 2, target: "b", targetAddress: "x", gossip: []),
                  .ack(seq: 3, gossip: [other, me]), .sync(members: [me, other], reply: true)] {
            let (from, back) = try Wire.decodeSWIM(Wire.encode(m, from: me))
            #expect(from == me)
            #expect(back == m)
        }
    }
}
