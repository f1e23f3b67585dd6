/// The addresses Decos reads from manifests, command lines and the network: `HOST:PORT` and
/// IPv4 addresses with and without a prefix. A module of their own, below everything that reads
/// an address, so no part has to import another's for them.

/// `HOST:PORT` (`[::1]:80` for IPv6; an empty host is 127.0.0.1), or nil. Every address the
/// manifest, the command line and the kernel command line take is read by this.
public func parseHostPort(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
          (0...65535).contains(port) else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host.isEmpty ? "127.0.0.1" : host, port)
}

/// An IPv4 address in network order.
public struct IPv4Address: Sendable, Hashable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8)

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) { bytes = (a, b, c, d) }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var b: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, let v = UInt8(p) else { return nil }
            b.append(v)
        }
        bytes = (b[0], b[1], b[2], b[3])
    }

    /// The address in four bytes; nil for any other count (they may come off the network).
    public init?(bytes b: some Collection<UInt8>) {
        let a = Array(b)
        guard a.count == 4 else { return nil }
        bytes = (a[0], a[1], a[2], a[3])
    }

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3] }
    public var description: String { "\(bytes.0).\(bytes.1).\(bytes.2).\(bytes.3)" }
    public static func == (a: Self, b: Self) -> Bool { a.array == b.array }
    public func hash(into h: inout Hasher) { h.combine(array) }
}

/// An address with its prefix length, `10.0.2.15/24`.
public struct IPv4CIDR: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefix: Int

    public init(address: IPv4Address, prefix: Int) {
        self.address = address
        self.prefix = prefix
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let a = IPv4Address(String(parts[0])), let p = Int(parts[1]), (0...32).contains(p) else { return nil }
        address = a
        prefix = p
    }

    public var description: String { "\(address)/\(prefix)" }
}
