#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Infoset
import Logging
import Storage
import Synchronization

/// A part of a durable service's state: the infoset kept under one key.
public struct StoredRecord: Sendable {
    public var key: String
    public var record: Element

    public init(_ key: String, _ record: Element) {
        self.key = key
        self.record = record
    }
}

/// A service whose state can be kept on the node's storage (`durable="true"` in the manifest).
///
/// Its state is a set of records, each an infoset under a key (a key-value store keeps one record
/// a key; a counter one record in all). A handler says what it changed with `request.store` and
/// `request.erase`; the kernel stores those writes, with group commit, before the reply is sent.
/// At the next start the service is built with no initial state and given back its records.
public protocol DurableService: Service {
    /// The whole state as records: what is stored when the service first starts on a node's
    /// storage (so the manifest's or the Create's initial state is kept too).
    func records() throws -> [StoredRecord]
    /// Puts back the record kept under `key`, or removes it (nil): at start, once per stored
    /// record; after a write that did not reach storage, once per key written since the last
    /// stored one, with what storage holds.
    func restore(_ key: String, _ record: Element?) throws
}

extension DurableService {
    /// `Service.serve` for a durable service: the request's writes are stored (the reply waits for
    /// them, while other requests enter the actor), its notification goes out once they are, and
    /// a read waits for the writes before it, so it never shows a change that may yet be lost.
    /// A service of a durable type that is not durable here serves as any other.
    @inlinable
    public func serve(_ request: Request, as registration: Registration, entered: (@Sendable () -> Void)?,
                      logger: Logger) async -> Message {
        entered?()
        let outcome: Result<Element?, any Error>
        do { outcome = .success(try await handle(request)) } catch { outcome = .failure(error) }
        guard let journal = registration.journal else {
            if case .success = outcome, request.verb.changesState { registration.publish(request.message) }
            return request.reply(outcome, registration, logger)
        }
        return await stored(request, outcome, in: journal, registration, logger)
    }

    /// Stores what `request` wrote (or waits for what was written before it), then replies.
    public func stored(_ request: Request, _ outcome: Result<Element?, any Error>, in journal: Journal,
                       _ registration: Registration, _ logger: Logger) async -> Message {
        let writes = request.effects.writes.withLock { $0 }.map { w -> ServiceStore.Write in
            switch w {
            case .put(let key, let record): .put(key, BinaryInfoset.encode(record))
            case .erase(let key): .erase(key)
            }
        }
        let changed = if case .success = outcome { request.verb.changesState } else { false }
        let ticket: Ticket?
        if writes.isEmpty && !changed {
            ticket = journal.barrier()
        } else {
            var stored: (@Sendable () -> Void)?
            if changed {
                let message = request.message
                stored = { registration.publish(message) }
            }
            ticket = journal.append(writes, stored: stored)
        }
        if let ticket, case .failure(let error) = await ticket.wait() {
            let clean = putBack(from: journal, logger)
            guard writes.isEmpty && !changed else {
                logger.handling(request).error("\(registration.path): \(request.verb.rawValue) not stored: \(error)")
                return .faulted(.storageFailed(registration.uri, error), replyingTo: request.message)
            }
            // A read behind a change that was not stored: answered again, from the state put back.
            guard clean else { return .faulted(.storageFailed(registration.uri, error), replyingTo: request.message) }
            do { return request.reply(.success(try await handle(request)), registration, logger) } catch {
                return request.reply(.failure(error), registration, logger)
            }
        }
        return request.reply(outcome, registration, logger)
    }

    /// After a write that failed: every key written since the last stored one goes back to what
    /// the file holds, in this one turn of the actor (requests queued meanwhile found their
    /// writes failed and their reads held at the barrier). Writes go on once every key is back;
    /// false if one could not be (then they go on failing, and the log says which key).
    @discardableResult
    func putBack(from journal: Journal, _ logger: Logger) -> Bool {
        let dirty = journal.dirtyKeys()
        var back: Set<String> = []
        for key in dirty.sorted() {
            do {
                let record = try journal.store.read(key).map(ServiceFiles.decode)
                try restore(key, record)
                back.insert(key)
            } catch {
                logger.error("\(journal.store.file): cannot put back \"\(key)\" after a failed write, so writes stay refused: \(error)")
            }
        }
        journal.recovered(back)
        return back == dirty
    }

    /// Gives the service its stored records, in one turn of the actor.
    func restoreAll(_ records: [ServiceStore.Record]) throws {
        for r in records { try restore(r.key, ServiceFiles.decode(r.value)) }
    }
}

extension Request {
    /// Keeps `record` under `key` in the service's durable state: stored, with this request's
    /// other writes, before its reply is sent. A service that is not durable here ignores it.
    public func store(_ record: Element, under key: String) { effects.writes.withLock { $0.append(.put(key, record)) } }

    /// Removes what is kept under `key` in the service's durable state.
    public func erase(_ key: String) { effects.writes.withLock { $0.append(.erase(key)) } }

    /// The reply to this request once handled: its body and the buffers the handler attached, or
    /// the fault it threw (a `Fault` as is, anything else a Receiver fault, logged).
    @inlinable
    public func reply(_ outcome: Result<Element?, any Error>, _ registration: Registration, _ logger: Logger) -> Message {
        switch outcome {
        case .success(let body):
            var reply = Message.response(to: message, body: body)
            reply.buffers = effects.buffers.withLock { $0 }
            return reply
        case .failure(let fault as Fault):
            return .faulted(fault, replyingTo: message)
        case .failure(let error):
            logger.handling(self).warning("\(registration.path) failed on \(verb.rawValue): \(error)")
            return .faulted(.serviceFailed(registration.uri, error), replyingTo: message)
        }
    }
}

/// Where a node keeps its durable services' files, and how their records are read.
public struct ServiceFiles: Sendable {
    /// The storage directory: `<Storage path>`, `--data`, or the appliance's data disk.
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// The file of the service at `path`: `/kv` → `services/kv.db`, `/a/b` → `services/a%2Fb.db`.
    public func file(for path: String) -> String {
        var name = ""
        for b in path.utf8.drop(while: { $0 == UInt8(ascii: "/") }) {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                name.unicodeScalars.append(Unicode.Scalar(b))
            default:
                name += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return directory + "/services/" + name + ".db"
    }

    /// The files of durable services made at run time (by a Create or a loaded manifest), with
    /// the configuration each is made again from at the node's start.
    public func recreations() -> [ServiceConfig] {
        guard let dir = opendir(directory + "/services") else { return [] }
        defer { closedir(dir) }
        var found: [ServiceConfig] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasSuffix(".db"), !name.hasPrefix("."),
                  let bytes = ServiceStore.recreation(of: directory + "/services/" + name),
                  let e = try? Self.decode(bytes), let config = ServiceConfig(recreating: e) else { continue }
            found.append(config)
        }
        return found.sorted { ($0.name ?? "") < ($1.name ?? "") }
    }

    /// A stored record's infoset; a record that does not decode is a damaged file.
    static func decode(_ bytes: [UInt8]) throws -> Element {
        var r = ByteReader(bytes)
        return try BinaryInfoset.decode(&r)
    }
}

extension ServiceConfig {
    /// What a durable service made at run time is made again from: `<Service><Contract/><Name/>
    /// <Partner><Name/><Uri/></Partner>…<Config>…</Config></Service>` (its state is its records).
    var recreation: Element {
        var e = Element("Service", children: [.element(Element("Contract", text: contract)), .element(Element("Name", text: name ?? ""))])
        for (n, u) in partners.sorted(by: { $0.key < $1.key }) {
            e.children.append(.element(Element("Partner", children: [.element(Element("Name", text: n)), .element(Element("Uri", text: u))])))
        }
        if let settings { e.children.append(.element(Element("Config", children: [.element(settings)]))) }
        return e
    }

    init?(recreating e: Element) {
        guard e.name.local == "Service", let contract = e.child("Contract")?.text, let name = e.child("Name")?.text, !name.isEmpty else { return nil }
        var partners: [String: String] = [:]
        for p in e.elements where p.name.local == "Partner" {
            guard let n = p.child("Name")?.text, let u = p.child("Uri")?.text else { return nil }
            partners[n] = u
        }
        self.init(contract: contract, name: name, partners: partners, settings: e.child("Config")?.elements.first)
        durable = true
    }
}

private extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
