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
    public func backup(_ path: String) throws(Fault) -> [UInt8] {
        let (_, journal) = try durable(path)
        let copy = try scratchFile("backup")
        defer { ServiceStore.remove(file: copy) }
        do { try journal.store.snapshot(into: copy) } catch { throw .storageFailed(uris.authority + path, error) }
        guard let bytes = readFile(copy) else { throw Fault(.receiver, "StorageFailed", "cannot read the backup copy \(copy)") }
        return bytes
    }

    /// Makes `bytes` (a backup of a service of the same contract) the whole state of the durable
    /// service at `path`: stored as one transaction, then put in place in one turn of its actor.
    /// A backup that is damaged, foreign or of another contract is refused and nothing changes.
    /// Returns the number of records restored.
    public func restore(_ path: String, from bytes: [UInt8], for request: Request? = nil) async throws(Fault) -> Int {
        let (reg, journal) = try durable(path)
        let copy = try scratchFile("restore")
        defer { ServiceStore.remove(file: copy) }
        guard writeFile(copy, bytes) else { throw Fault(.receiver, "StorageFailed", "cannot write \(copy): \(String(cString: strerror(errno)))") }
        let records: [ServiceStore.Record]
        do {
            guard let r = try ServiceStore(file: copy, service: path, contract: reg.contract).load() else {
                throw Fault.invalidBody("the backup holds no stored state")
            }
            records = r
        } catch let e as StorageError {
            throw Fault(.sender, "BadBackup", "the backup " + e.message.replacing("; it is kept as it is", with: ""))
        } catch {
            throw error as? Fault ?? .invalidBody("\(error)")
        }
        guard let service = reg.service as? any DurableService else { throw Fault(.sender, "NotDurable", "\(path) is not durable") }
        try await service.replaceState(with: records, in: journal, registration: reg, logger: request.map { logger.handling($0) } ?? logger)
        logger.info("\(path): restored \(records.count) records from a backup")
        return records.count
    }
}

extension DurableService {
    /// Replaces the whole state with `records`, in memory and on storage, as one change.
    func replaceState(with records: [ServiceStore.Record], in journal: Journal, registration: Registration,
                      logger: Logger) async throws(Fault) {
        var writes: [ServiceStore.Write] = []
        do {
            var incoming: [String: Element] = [:]
            for r in records { incoming[r.key] = try ServiceFiles.decode(r.value) }
            for old in try self.records() where incoming[old.key] == nil {
                try restore(old.key, nil)
                writes.append(.erase(old.key))
            }
            for r in records {
                try restore(r.key, incoming[r.key])
                writes.append(.put(r.key, r.value))
            }
        } catch {
            putBack(from: journal, logger, also: writes.map(\.key))
            throw Fault(.sender, "BadBackup", "the backup's records do not make a state of \(registration.contract): \(error)")
        }
        if case .failure(let error) = await journal.append(writes).wait() {
            putBack(from: journal, logger)
            throw .storageFailed(registration.uri, error)
        }
    }
}
