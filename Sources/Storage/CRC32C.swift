/// CRC-32C (Castagnoli), kept beside each stored record: SQLite checks its own pages' structure
/// but not the bytes of a value, so a flipped bit in a record would otherwise be read back as data.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum<S: Sequence>(_ bytes: S, from start: UInt32 = 0) -> UInt32 where S.Element == UInt8 {
        var c = ~start
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return ~c
    }

    /// The checksum of a record: its key, a zero byte, and its value.
    static func record(key: String, value: [UInt8]) -> UInt32 {
        checksum(value, from: checksum(CollectionOfOne(0), from: checksum(key.utf8)))
    }
}
