#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Infoset
import Logging
import ProcessKernel
import Storage
import Synchronization

/// Backups of durable services: a consistent copy of one service's file taken while writes go
/// on, and a copy put back as the service's whole state (`/os/storage`, `decos ctl backup|restore`).
extension Kernel {
    /// The durable service at `path` and its journal, or a fault naming what is missing.
    private func durable(_ path: String) throws(Fault) -> (Registration, Journal) {
        guard let reg = uris.lookup(path) else { throw .unknownService(path) }
        guard let journal = reg.journal else { throw Fault(.sender, "NotDurable", "\(path) is not durable: it has nothing stored to back up or restore") }
        return (reg, journal)
    }

    /// A scratch file beside the services' files (the same file system, so no copy across disks).
    private func scratchFile(_ kind: String) throws(Fault) -> String {
        guard let storage else { throw Fault(.sender, "NoStorage", "this node has no storage") }
        return storage.directory + "/services/.\(kind)-\(getpid())-\(Self.scratchNumber.add(1, ordering: .relaxed).newValue).db"
    }
    private static let scratchNumber = Atomic<Int>(0)

    /// The bytes of a SQLite file holding every record `path` has stored: what `restore` takes.
    /// Copied and read off the event loops.
    public func backup(_ path: String) async throws(Fault) -> [UInt8] {
        let (_, journal) = try durable(path)
        let copy = try scratchFile("backup")
        do {
            return try await offLoop { () throws(StorageError) -> [UInt8] in
                defer { ServiceStore.remove(file: copy) }
                try journal.store.snapshot(into: copy)
                guard let bytes = readFile(copy) else { throw StorageError(.failed, file: copy, "cannot read the backup's copy") }
                return bytes
            }
        } catch {
            throw .storageFailed(uris.authority + path, error)
        }
    }

    /// Makes `bytes` (a backup of a service of the same contract) the whole state of the durable
    /// service at `path`: checked whole first, off the event loops; then put in place in one turn
    /// of its actor and stored as one change, its subscribers told by a Replace notification.
    /// A backup that is damaged, foreign or of another contract is refused and nothing changes.
    /// Returns the number of records restored.
    public func restore(_ path: String, from bytes: [UInt8], for request: Request? = nil) async throws(Fault) -> Int {
        let (reg, journal) = try durable(path)
        let copy = try scratchFile("restore")
        let records: [ServiceStore.Record]
        do {
            records = try await offLoop { () throws(StorageError) -> [ServiceStore.Record] in
                defer { ServiceStore.remove(file: copy) }
                guard writeFile(copy, bytes) else { throw StorageError(.failed, file: copy, "cannot write: \(String(cString: strerror(errno)))") }
                return try ServiceStore.backup(copy, contract: reg.contract)
            }
        } catch where error.kind == .refused {
            throw Fault(.sender, "BadBackup", "the backup " + error.message)
        } catch {
            throw .storageFailed(uris.authority + path, error)
        }
        guard let service = reg.service as? any DurableService else { throw Fault(.sender, "NotDurable", "\(path) is not durable") }
        try await service.replaceState(with: records, in: journal, registration: reg, logger: request.map { logger.handling($0) } ?? logger)
        logger.info("\(path): restored \(records.count) records from a backup")
        return records.count
    }
}

extension DurableService {
    /// Replaces the whole state with `records`, in memory and on storage, as one change, and
    /// tells the subscribers with a Replace notification once it is stored. A record the service
    /// refuses leaves its state as it was.
    func replaceState(with records: [ServiceStore.Record], in journal: Journal, registration: Registration,
                      logger: Logger) async throws(Fault) {
        var incoming: [String: Element] = [:]
        let before: [StoredRecord]
        do {
            for r in records { incoming[r.key] = try ServiceFiles.decode(r.value) }
            before = try self.records()
        } catch {
            throw Fault(.sender, "BadBackup", "the backup's records do not make a state of \(registration.contract): \(error)")
        }
        var writes: [ServiceStore.Write] = []
        do {
            for old in before where incoming[old.key] == nil {
                writes.append(.erase(old.key))
                try restore(old.key, nil)
            }
            for r in records {
                writes.append(.put(r.key, r.value))
                try restore(r.key, incoming[r.key])
            }
        } catch {
            // Memory as it was, from what it held (not from the file, behind which writes may be in flight).
            let held = Dictionary(before.map { ($0.key, $0.record) }) { first, _ in first }
            for w in writes { try? restore(w.key, held[w.key]) }
            throw Fault(.sender, "BadBackup", "the backup's records do not make a state of \(registration.contract): \(error)")
        }
        let replaced = Message(.replace, to: registration.path)
        if case .failure(let error) = await journal.append(writes, stored: { registration.publish(replaced) }).wait() {
            putBack(from: journal, logger)
            throw .storageFailed(registration.uri, error)
        }
    }
}
