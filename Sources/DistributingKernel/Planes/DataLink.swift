import Addresses
#if canImport(Glibc)
import Glibc
#endif
import DeviceDrivers
import Dispatch
import Infoset
import Logging
import ProcessKernel
import ServiceKernel
import Synchronization

/// The receiving end of the TCP data plane: one blocking socket per peer, read by a thread of its
/// own that receives each chunk's bytes straight into the buffer being imported. The kernel's
/// copy out of the socket is the only copy — as little as any TCP receiver can do — where an
/// event loop would read into its own buffer and copy again. The peer's end is an ordinary data
/// connection on its event loop (handshake, DATA_PULL in, DATA_CHUNK out: docs/wire.md).
/// With encryption on (the default) each chunk is decrypted in place where it lands, and counted
/// only once its tag checks: no byte reaches a service before authentication has seen them all.
///
/// `@unchecked Sendable`: `fd` and the identity fields are immutable; `sending` is behind its
/// mutex; `receiving` is set during the handshake and `interface` right after it, before the
/// reader starts and the link is handed out, and then only read.
final class DataLink: @unchecked Sendable {
    let peer: String
    /// Which link to `peer` this is: a link that ends forgets only itself, never its successor.
    let generation: UInt64
    private let fd: Int32
    /// The local network interface the link's connection leaves by (its buffers land in that
    /// interface's NUMA node's pool); nil if it cannot be told.
    private(set) var interface: String?
    /// Seals DATA_PULLs (nil with encryption off); the lock also keeps two pulls' bytes apart.
    private let sending = Mutex<FrameCipher?>(nil)
    /// Opens the peer's chunks (nil with encryption off).
    private var receiving: FrameCipher?
    private weak var plane: TCPPlane?
    private let active = Atomic<UInt64>(0)
    /// Writes the DATA_PULLs, in order. Whoever pulls may be on an event loop (the node runs its
    /// tasks there, Executors.swift), and a write blocks — for up to the send timeout — once a
    /// peer that stopped reading has filled the socket's buffers: that wait is this queue's.
    private let writer: DispatchQueue

    /// When a buffer last started or finished arriving here, in the manager's milliseconds.
    var lastActive: UInt64 { active.load(ordering: .relaxed) }
    func touch(_ now: UInt64) { active.store(now, ordering: .relaxed) }

    private init(peer: String, generation: UInt64, fd: Int32, plane: TCPPlane) {
        self.peer = peer
        self.generation = generation
        self.fd = fd
        self.plane = plane
        writer = DispatchQueue(label: "decos.datalink.\(peer).pulls")
    }

    /// Connects to `peer` at `address` and proves this node holds the cluster key; nil if either fails.
    /// On success the link's reader thread runs until the connection ends.
    static func open(to peer: String, address: String, generation: UInt64, plane: TCPPlane) async -> DataLink? {
        await withCheckedContinuation { c in
            // A thread of its own, as the reaper's waits have: the reader blocks for the link's life.
            DispatchQueue(label: "decos.datalink.\(peer)").async {
                guard let link = connect(to: peer, address: address, generation: generation, plane: plane) else { return c.resume(returning: nil) }
                c.resume(returning: link)
                link.readChunks()
            }
        }
    }

    private static func connect(to peer: String, address: String, generation: UInt64, plane: TCPPlane) -> DataLink? {
        guard let (host, port) = parseHostPort(address) else { return nil }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let ai = list else { return nil }
        defer { freeaddrinfo(list) }
        let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        // Connecting and the handshake are bounded by the handshake timeout, and so is each write of
        // a pull after it (the send timeout stays: a peer that stops reading ends the link); reading
        // chunks is not.
        let limit = plane.config.handshakeTimeout.nanoseconds
        var t = timeval(tv_sec: Int(limit / 1_000_000_000), tv_usec: Int(limit % 1_000_000_000 / 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let link = DataLink(peer: peer, generation: generation, fd: fd, plane: plane)
        guard Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0, link.handshake(plane) else {
            Glibc.close(fd)
            return nil
        }
        var none = timeval()
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
        link.interface = localInterface(fd)
        return link
    }

    /// HELLO both ways, then AUTH both ways, as HandshakeHandler does for a connection it opens.
    private func handshake(_ plane: TCPPlane) -> Bool {
        guard let advertised = plane.host?.advertised else { return false }
        let config = plane.config
        let nonce = Handshake.nonce()
        let encrypt = config.encrypt
        let hello = Handshake.Hello(role: .data, node: config.node, address: advertised, nonce: nonce, sealed: encrypt, epoch: config.epoch).encoded()
        guard send(Wire.Frame(.hello, hello)),
              let (type, payload) = readFrame(), type == Wire.FrameType.hello.rawValue,
              let theirs = try? Handshake.Hello.decode(payload), theirs.node == peer, theirs.role == .data else { return false }
        if let problem = Handshake.sealingProblem(mine: encrypt, theirs: theirs) {
            plane.logger.warning("data link to \(peer): \(problem)")
            return false
        }
        let key = config.key
        guard send(Wire.Frame(.auth, key.mac(fromHello: hello, toHello: payload))),
              let (authType, mac) = readFrame(), authType == Wire.FrameType.auth.rawValue,
              let peerKey = key.keyIndex(accepting: mac, fromHello: payload, toHello: hello) else { return false }
        if encrypt {
            let session = key.ciphers(role: .data, myNonce: nonce, theirNonce: theirs.nonce, me: config.node, peer: peer, peerKey: peerKey)
            sending.withLock { $0 = session.sending }
            receiving = session.receiving
        }
        return true
    }

    /// Asks the peer for one exported buffer; its chunks arrive on this link. Returns at once: the
    /// pull is written by `writer`. One that cannot be written (whole) ends the link — the stream
    /// is unreadable after part of a frame — and its reader then fails every import pulled over
    /// it, this one too.
    func pull(_ transfer: UInt64) {
        var w = ByteWriter()
        w.u64(transfer)
        let frame = Wire.Frame(.dataPull, w.bytes)
        writer.async { [self] in
            if !send(frame) { close() }
        }
    }

    /// Ends the link: the reader sees the end, fails what was still arriving, and exits.
    func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    deinit { Glibc.close(fd) }

    private func send(_ frame: Wire.Frame) -> Bool {
        sending.withLock { cipher in
            let bytes = cipher?.seal(frame) ?? frame.encoded()
            return bytes.withUnsafeBytes { writeAll(fd, $0) }
        }
    }

    /// A frame's header: its type and the length of what follows (checked against the limits).
    private func readHeader() -> (type: UInt8, length: Int)? {
        var h = [UInt8](repeating: 0, count: 6)
        guard h.withUnsafeMutableBytes({ readAll(fd, $0) }) else { return nil }
        let length = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
        if let problem = Wire.lengthProblem(length) ?? Wire.versionProblem(h[4]) {
            plane?.logger.warning("data link from \(peer): \(problem)")
            return nil
        }
        return (h[5], length - 2)
    }

    private func readFrame() -> (type: UInt8, payload: [UInt8])? {
        guard let (type, n) = readHeader(), let payload = skip(n) else { return nil }
        return (type, payload)
    }

    /// The reader: DATA_CHUNK frames land in their imports; an ERROR is logged; the link ends at
    /// the connection's end or at anything it cannot read, failing every import pulled over it.
    private func readChunks() {
        defer {
            // Shut, not closed: a pull racing the end must fail on this socket, not on a reused number.
            shutdown(fd, Int32(SHUT_RDWR))
            plane?.linkEnded(self)
        }
        var header = [UInt8](repeating: 0, count: 16)
        while let plane, let (type, length) = readHeader() {
            if let cipher = receiving {
                guard readSealed(type, length, cipher, plane) else {
                    plane.logger.warning("data link from \(peer): a frame failed to open (changed, replayed or dropped on the way); closing")
                    return
                }
                continue
            }
            guard type == Wire.FrameType.dataChunk.rawValue, length >= 16 else {
                guard let payload = skip(length) else { return }
                var r = ByteReader(payload)
                if type == Wire.FrameType.error.rawValue { plane.logger.warning("peer \(peer) reported: \((try? r.string()) ?? "?")") }
                continue
            }
            guard header.withUnsafeMutableBytes({ readAll(fd, $0) }) else { return }
            let n = length - 16
            guard let (imp, key) = place(header, count: n, plane) else {
                guard skip(n) != nil else { return }
                continue
            }
            // The import's bytes are written by this thread only, and handed over once all arrived.
            guard readAll(fd, imp.next(n)) else { return }
            plane.landed(n, in: imp, key)
        }
    }

    /// Reads one SEALED frame of `length` bytes (ciphertext and tag); false if it does not open.
    /// A data chunk travels alone in its SEALED frame and is decrypted where it lands: its first
    /// 22 bytes (frame header, transfer, offset) say where, the rest is read straight into the
    /// import and decrypted in place, and only a tag that checks lets the import count it (one
    /// that fails ends the link, failing every import on it). Anything else is read whole,
    /// opened, and its frames handled.
    private func readSealed(_ type: UInt8, _ length: Int, _ cipher: FrameCipher, _ plane: TCPPlane) -> Bool {
        let n = length - FrameCipher.overhead, lead = 6 + 16
        guard type == Wire.FrameType.sealed.rawValue, n >= 0, cipher.begin(plaintext: n) else { return false }
        func read(_ into: UnsafeMutableRawBufferPointer) -> Bool { readAll(fd, into) && cipher.update(into) }
        func finish() -> Bool {
            var tag = [UInt8](repeating: 0, count: FrameCipher.overhead)
            return tag.withUnsafeMutableBytes { readAll(fd, $0) } && tag.withUnsafeBytes { cipher.finish(tag: $0) }
        }
        var plain = [UInt8](repeating: 0, count: min(n, lead))
        guard plain.withUnsafeMutableBytes(read) else { return false }
        let inner = plain.count < lead ? 0 : Int(plain[0]) << 24 | Int(plain[1]) << 16 | Int(plain[2]) << 8 | Int(plain[3])
        let lone = plain.count == lead && plain[4] == Wire.version && plain[5] == Wire.FrameType.dataChunk.rawValue && inner + 4 == n
        if lone, let (imp, key) = place(plain[6...], count: n - lead, plane) {
            let count = n - lead
            guard read(imp.next(count)), finish() else { return false }
            plane.landed(count, in: imp, key)
            return true
        }
        // The rest, whole: a lone chunk not awaited (place has failed its import; read past it), or other frames.
        plain += [UInt8](repeating: 0, count: n - plain.count)
        guard plain.withUnsafeMutableBytes({ read(UnsafeMutableRawBufferPointer(rebasing: $0[min(n, lead)...])) }), finish(),
              let frames = Wire.frames(in: plain) else { return false }
        if !lone { for f in frames { f.withPayload { land(f.type, $0, plane) } } }
        return true
    }

    /// The import a chunk of `count` bytes whose transfer and offset `header` holds lands in; nil
    /// (and the import failed) when the sender said "no such transfer", or the chunk is not awaited
    /// here or out of place. A transfer's chunks come in order on this one stream, each starting
    /// where the last ended: an import is complete only when every byte was written, each once.
    private func place(_ header: some Collection<UInt8>, count: Int, _ plane: TCPPlane) -> (TCPPlane.Import, TCPPlane.ImportKey)? {
        var r = ByteReader(Array(header.prefix(16)))
        let transfer = (try? r.u64()) ?? 0, offset = (try? r.u64()) ?? 0
        let key = TCPPlane.ImportKey(peer: peer, transfer: transfer)
        guard offset != UInt64.max, let imp = plane.awaited(key, on: self),
              offset == UInt64(imp.received), count <= imp.length - imp.received else {
            plane.failImport(key)
            return nil
        }
        return (imp, key)
    }

    /// Lands an opened frame: a chunk's bytes are copied into their import; an error is logged.
    private func land(_ type: UInt8, _ plain: UnsafeRawBufferPointer, _ plane: TCPPlane) {
        guard type == Wire.FrameType.dataChunk.rawValue, plain.count >= 16 else {
            var r = ByteReader(Array(plain))
            if type == Wire.FrameType.error.rawValue { plane.logger.warning("peer \(peer) reported: \((try? r.string()) ?? "?")") }
            return
        }
        let n = plain.count - 16
        guard let (imp, key) = place(plain.prefix(16), count: n, plane) else { return }
        imp.next(n).copyMemory(from: UnsafeRawBufferPointer(rebasing: plain[16...]))
        plane.landed(n, in: imp, key)
    }

    private func skip(_ n: Int) -> [UInt8]? {
        var b = [UInt8](repeating: 0, count: n)
        return b.withUnsafeMutableBytes { readAll(fd, $0) } ? b : nil
    }
}

private func readAll(_ fd: Int32, _ b: UnsafeMutableRawBufferPointer) -> Bool {
    var done = 0
    while done < b.count {
        let r = recv(fd, b.baseAddress! + done, b.count - done, Int32(MSG_WAITALL))
        if r > 0 { done += r } else if r < 0 && errno == EINTR { continue } else { return false }
    }
    return true
}

private func writeAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Bool {
    var done = 0
    while done < b.count {
        let r = Glibc.send(fd, b.baseAddress! + done, b.count - done, Int32(MSG_NOSIGNAL))
        if r > 0 { done += r } else if r < 0 && errno == EINTR { continue } else { return false }
    }
    return true
}

/// The name of the interface holding the local address of connected socket `fd`.
private func localInterface(_ fd: Int32) -> String? {
    var local = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    // The sockets API passes addresses as `sockaddr`, whatever their family.
    return withUnsafeMutablePointer(to: &local) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in getsockname(fd, a, &length) == 0 ? NetworkInterface.holding(a) : nil }
    }
}
