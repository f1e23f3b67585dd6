import Infoset
import ServiceKernel

/// The namespace's messages in DIRECTORY frames (docs/wire.md): a kind byte, then
/// 0 digest: reply byte, count, (owner string, version u64)…;
/// 1 table: owner string, version u64, count, (path string, contract string)…;
/// 2 summary: count varint, hash u64.
extension NamespaceReplica.Message {
    var encoded: [UInt8] {
        var w = ByteWriter()
        switch self {
        case .digest(let versions, let reply):
            w.byte(0)
            w.byte(reply ? 1 : 0)
            w.varint(UInt64(versions.count))
            for v in versions { w.string(v.owner); w.u64(v.version) }
        case .table(let owner, let version, let entries):
            w.byte(1)
            w.string(owner)
            w.u64(version)
            w.varint(UInt64(entries.count))
            for e in entries { w.string(e.path); w.string(e.contract) }
        case .summary(let count, let hash):
            w.byte(2)
            w.varint(UInt64(count))
            w.u64(hash)
        }
        return w.bytes
    }

    var frame: Wire.Frame { Wire.Frame(.directory, encoded) }

    /// Reads one message; every count is checked against the bytes left before anything is
    /// kept, and a table against `NamespaceReplica.maxTableEntries`.
    init(decoding payload: [UInt8]) throws(ByteReader.Failure) {
        var r = ByteReader(payload)
        switch try r.byte() {
        case 0:
            let reply = try r.byte() == 1
            let n = try r.count()
            // One table per member and this node's own: a longer digest is a peer's invention.
            let most = Membership.maxMembers + 1
            guard n <= most else { throw r.fail("a digest of \(n) tables (a cluster holds at most \(most))") }
            var versions: [NamespaceReplica.Version] = []
            versions.reserveCapacity(min(n, r.remaining / 9))  // each takes at least 9 bytes
            for _ in 0..<n { versions.append(NamespaceReplica.Version(try r.string(), try r.u64())) }
            self = .digest(versions, reply: reply)
        case 1:
            let owner = try r.string()
            let version = try r.u64()
            let n = try r.count()
            let most = NamespaceReplica.maxTableEntries
            guard n <= most else { throw r.fail("a table of \(n) entries (at most \(most) are kept per node)") }
            var entries: [DirectoryEntry] = []
            entries.reserveCapacity(min(n, r.remaining / 2))  // each takes at least 2 bytes
            for _ in 0..<n {
                let path = try r.string(), contract = try r.string()
                entries.append(DirectoryEntry(uri: "decos://\(owner)\(path)", path: path, contract: contract, node: owner))
            }
            self = .table(owner: owner, version: version, entries: entries)
        case 2:
            // A count of tables, not of bytes that follow: `r.count()` would refuse every
            // summary of more than eight tables.
            let count = try r.varint(), hash = try r.u64()
            self = .summary(count: Int(clamping: count), hash: hash)
        case let k:
            throw r.fail("unknown directory message \(k)")
        }
    }
}
