/// The receiver's side of one AF_XDP transfer's reliability: which chunks are here. A buffer is
/// whole when every chunk has landed once; a chunk that comes again lands nowhere.
struct XDPCoverage {
    let total: Int
    private var bits: [UInt64]
    private(set) var count = 0
    /// Every chunk below it is here.
    private(set) var cumulative = 0

    /// `total` is checked by the caller against the buffer limit before this allocates a bit per chunk.
    init(total: Int) {
        self.total = total
        bits = [UInt64](repeating: 0, count: (total + 63) / 64)
    }

    var whole: Bool { count == total }

    func has(_ chunk: Int) -> Bool { bits[chunk / 64] & (1 << UInt64(chunk % 64)) != 0 }

    /// Marks `chunk` as landed; false if it had already.
    mutating func land(_ chunk: Int) -> Bool {
        guard !has(chunk) else { return false }
        bits[chunk / 64] |= 1 << UInt64(chunk % 64)
        count += 1
        while cumulative < total, has(cumulative) { cumulative += 1 }
        return true
    }

    /// What an ACK says now: the cumulative point and up to `words` words of SACK bits past it
    /// (trailing empty words left out).
    func ack(words: Int = XDPWire.maxSackWords) -> XDPWire.Ack {
        var sack: [UInt64] = []
        var c = cumulative + 1
        for _ in 0..<words where c < total {
            var word: UInt64 = 0
            for bit in 0..<64 where c + bit < total && has(c + bit) { word |= 1 << UInt64(bit) }
            sack.append(word)
            c += 64
        }
        while sack.last == 0 { sack.removeLast() }
        return XDPWire.Ack(cumulative: UInt64(cumulative), sack: sack)
    }
}
