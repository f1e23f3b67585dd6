@testable import Gateway
import NIOCore
import ServiceKernel
import Testing
import TestKit

/// The MTOM body reader: the same parts however the body is cut into reads, and every limit
/// checked as the bytes come, before the pool is asked for memory.
@Suite(.bounded, .computeThread) struct MultipartTests {
    // Each test its own (a suite instance per test), so one test's buffers do not count in another's.
    let pool = BufferPool(limit: 64 << 20, keepFree: 0)
    let limits = MultipartReader.Limits(rootBytes: 4096, bufferBytes: 1 << 20)

    func body(_ parts: [(headers: String, bytes: [UInt8])], boundary: String = "b0und", preamble: String = "", epilogue: String = "") -> [UInt8] {
        var out = Array(preamble.utf8)
        for p in parts { out += Array("--\(boundary)\r\n\(p.headers)\r\n".utf8) + p.bytes + [0x0D, 0x0A] }
        return out + Array("--\(boundary)--\(epilogue)".utf8)
    }

    func read(_ bytes: [UInt8], cut: Int, start: String? = nil, limits: MultipartReader.Limits? = nil) throws(Fault) -> MultipartReader.Parts {
        var reader = try MultipartReader(boundary: "b0und", start: start, limits: limits ?? self.limits, pool: pool)
        var i = 0
        while i < bytes.count {
            try reader.feed(ByteBuffer(bytes: bytes[i..<min(bytes.count, i + cut)]))
            i += cut
        }
        return try reader.finish()
    }

    @Test func thePartsAreTheSameHoweverTheBodyIsCut() throws {
        // Binary bytes that hold CR, LF, dashes and most of the delimiter, but never all of it.
        let blob = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) } + Array("\r\n--b0un".utf8) + [0x0D, 0x0A, 0x2D]
        let whole = body([("Content-Type: application/xop+xml\r\nContent-ID: <root>\r\n", Array("<e/>".utf8)),
                          ("Content-ID: <blob@x>\r\nContent-Type: application/octet-stream\r\n", blob),
                          ("Content-ID:\r\n <empty>\r\n", [])],
                         preamble: "ignored preamble\r\n", epilogue: "\r\nignored epilogue")
        for cut in [1, 2, 3, 7, 13, 64, 4096, whole.count] {
            let parts = try read(whole, cut: cut, start: "<root>")
            #expect(parts.root.bytes == Array("<e/>".utf8), "cut \(cut)")
            #expect(parts.others.map(\.contentID) == ["blob@x", "empty"], "cut \(cut)")
            #expect(parts.others.first?.buffer?.bytes == blob, "cut \(cut)")
            #expect(parts.others.last?.buffer?.count == 0)
        }
    }

    @Test func eachLimitIsAFaultBeforeTheMemoryIsTaken() throws {
        let before = pool.usage.inUse
        let tooMany = body((0...64).map { ("Content-ID: <p\($0)>\r\n", [1]) })
        expectTooLarge { _ = try read(tooMany, cut: 100) }
        // A part that says it is larger than allowed is refused on its headers.
        let declared = body([("\r\n", Array("<e/>".utf8)), ("Content-ID: <big>\r\nContent-Length: 2000000\r\n", [1])])
        expectTooLarge { _ = try read(declared, cut: 100) }
        // One that does not say so is refused as it passes the limit.
        let grown = body([("\r\n", Array("<e/>".utf8)), ("Content-ID: <big>\r\n", [UInt8](repeating: 7, count: (1 << 20) + 1))])
        expectTooLarge { _ = try read(grown, cut: 65536) }
        let bigRoot = body([("\r\n", [UInt8](repeating: 0x20, count: 5000))])
        expectTooLarge { _ = try read(bigRoot, cut: 1000) }
        let bigHeaders = Array("--b0und\r\nX: \(String(repeating: "h", count: 9000))\r\n\r\n".utf8)
        expectTooLarge { _ = try read(bigHeaders, cut: 1000) }
        // Nothing of the refused parts is left taken from the pool.
        #expect(pool.usage.inUse == before)
    }

    @Test func theEnvelopeIsAdmittedBeforeAnyPartTakesMemory() throws {
        let whole = body([("", Array("<e/>".utf8)), ("Content-ID: <b>\r\nContent-Length: 3\r\n", [1, 2, 3])])
        var seen: [UInt8] = []
        var reader = try MultipartReader(boundary: "b0und", start: nil, limits: limits, pool: pool) { root throws(Fault) in
            seen = root.bytes
            throw Fault.denied("not this client")
        }
        #expect(throws: Fault.self) { try reader.feed(ByteBuffer(bytes: whole)) }
        #expect(seen == Array("<e/>".utf8))
        #expect(pool.usage.mapped == 0)
        // A part whose bytes are not what it declared is malformed, either way.
        #expect(throws: Fault.self) { _ = try read(body([("\r\n", []), ("Content-ID: <b>\r\nContent-Length: 4\r\n", [1, 2, 3])]), cut: 5) }
        #expect(throws: Fault.self) { _ = try read(body([("\r\n", []), ("Content-ID: <b>\r\nContent-Length: 2\r\n", [1, 2, 3])]), cut: 5) }
        #expect(pool.usage.inUse == 0)
    }

    @Test func malformedBodiesAreFaultsThatSayWhatIsWrong() throws {
        let good = body([("\r\n", Array("<e/>".utf8))])
        #expect(throws: Fault.self) { _ = try read(Array(good.dropLast(4)), cut: 10) }  // no closing delimiter
        #expect(throws: Fault.self) { _ = try read(Array("--b0undXX\r\n\r\n".utf8), cut: 10) }
        #expect(throws: Fault.self) { _ = try read(body([("Content-Transfer-Encoding: base64\r\n", Array("AAAA".utf8))]), cut: 10) }
        #expect(throws: Fault.self) { _ = try read(body([("no colon here\r\n", [])]), cut: 10) }
        #expect(throws: Fault.self) { _ = try read(good, cut: 10, start: "<nobody>") }
        #expect(throws: Fault.self) { _ = try MultipartReader(boundary: "", start: nil, limits: limits, pool: pool) }
    }
}

/// Expects `work` to throw a `TooLarge` fault.
func expectTooLarge(_ work: () throws -> Void, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let error = #expect(throws: Fault.self, sourceLocation: sourceLocation) { try work() }
    #expect(error?.subcode?.local == "TooLarge", "\(String(describing: error))", sourceLocation: sourceLocation)
}
