@testable import DistributingKernel
import NIOCore
import Testing
import TestKit

@Suite(.bounded, .computeThread) struct FrameReaderTests {
    /// Frames of several sizes, one of them larger than a socket read usually brings.
    let frames: [Wire.Frame] = [
        Wire.Frame(.request, Array(0..<100)),
        Wire.Frame(.reply, []),
        Wire.Frame(.notify, (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
        Wire.Frame(.swim, [42]),
    ]

    func readAll(_ stream: [UInt8], pieces: [Int]) throws -> [(UInt8, [UInt8])] {
        var reader = FrameReader(maxFrame: Wire.maxFrame)
        var out: [(UInt8, [UInt8])] = []
        var at = 0
        for n in pieces + [stream.count] where at < stream.count {
            var b = ByteBuffer(bytes: stream[at..<min(at + n, stream.count)])
            at = min(at + n, stream.count)
            try reader.read(&b) { f in out.append((f.type, f.payload)); return true }
        }
        return out
    }

    @Test func framesComeOutWholeHoweverTheStreamIsCut() throws {
        let stream = frames.flatMap { $0.encoded() }
        let expected = frames.map { ($0.type, $0.payload) }
        var g = SplitMix(seed: 11)
        for cut in [[1], [7], [4096], [65536], (0..<40).map { _ in Int(g.next() % 20_000) + 1 }] {
            let pieces = Array(repeating: cut, count: stream.count / cut.reduce(0, +) + 1).flatMap { $0 }
            let got = try readAll(stream, pieces: pieces)
            #expect(got.map(\.0) == expected.map(\.0), "cut into \(cut.prefix(3))…")
            #expect(got.map(\.1) == expected.map(\.1), "cut into \(cut.prefix(3))…")
        }
        // A frame's reader sees its payload only, not its neighbours in the same read.
        var reader = FrameReader(maxFrame: Wire.maxFrame)
        var b = ByteBuffer(bytes: stream)
        var remaining: [Int] = []
        try reader.read(&b) { f in remaining.append(f.reader.remaining); return true }
        #expect(remaining == frames.map(\.payload.count))
    }

    @Test func oversizeAndOtherVersionFramesAreRefusedBeforeTheirBytesArrive() throws {
        var reader = FrameReader(maxFrame: 1000)
        var big = ByteBuffer(bytes: [0, 0, 0x10, 0, Wire.version, 3])  // 4 KiB announced, 1000 allowed
        #expect(throws: FrameReader.Refused.self) { try reader.read(&big) { _ in true } }
        // The limit is asked per frame: one read may hold the frame that authenticates the peer
        // and a large one allowed only after it.
        var rising = FrameReader(maxFrame: 1000)
        var allowed = 100
        var both = ByteBuffer(bytes: Wire.Frame(.auth, [1]).encoded() + Wire.Frame(.request, [UInt8](repeating: 7, count: 500)).encoded())
        var sizes: [Int] = []
        try rising.read(&both, limit: { allowed }) { f in sizes.append(f.payload.count); allowed = 1000; return true }
        #expect(sizes == [1, 500])
        var early = ByteBuffer(bytes: Wire.Frame(.request, [UInt8](repeating: 7, count: 500)).encoded())
        var strict = FrameReader(maxFrame: 1000)
        #expect(throws: FrameReader.Refused.self) { try strict.read(&early, limit: { 100 }) { _ in true } }
        var other = FrameReader(maxFrame: 1000)
        var old = ByteBuffer(bytes: [0, 0, 0, 2, Wire.version &- 1, 3])
        #expect(throws: FrameReader.Refused.self) { try other.read(&old) { _ in true } }
    }
}
