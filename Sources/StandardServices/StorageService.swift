import Infoset
import ServiceKernel
import Storage
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `/os/storage`: where the node keeps its durable services' state. Get: the directory, its file
/// system's size and free bytes, and for each durable service its file, bytes, commits and how
/// long commits took to reach the disk (p50, p99 of the last 1,024). Submit `<Backup><Service>/kv
/// </Service></Backup>` returns a consistent copy of that service's file as the buffer `backup`;
/// Submit `<Restore><Service>/kv</Service></Restore>` with such a buffer makes it the service's
/// whole state (`decos ctl backup` and `decos ctl restore`).
public actor StorageService: Service {
    public static let contract = "urn:decos:os:storage"
    public static let operations = [ServiceOperation(.get, returns: StorageState.self), ServiceOperation(.submit, takes: .any, returns: .any)]

    public struct StorageState: Codable, Sendable {
        /// The storage directory; absent when the node keeps nothing across restarts.
        public var path: String?
        public var sizeBytes: Int?
        public var freeBytes: Int?
        public var service: [StoredService]
    }

    public struct StoredService: Codable, Sendable {
        public var path: String
        public var file: String
        public var bytes: Int
        public var commits: Int
        public var syncP50Microseconds: Double?
        public var syncP99Microseconds: Double?
    }

    public struct Backup: Codable, Sendable { public var service: String }
    public struct BackupResponse: Codable, Sendable {
        public var service: String
        public var bytes: Int
    }
    public struct Restore: Codable, Sendable { public var service: String }
    public struct RestoreResponse: Codable, Sendable {
        public var service: String
        public var records: Int
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws {
        let kernel = context.kernel
        self.kernel = kernel
        kernel.metrics.onScrape { m in
            let state = Self.state(of: kernel)
            if let size = state.sizeBytes, let free = state.freeBytes {
                m.gauge("decos_storage_size_bytes").set(size)
                m.gauge("decos_storage_free_bytes").set(free)
            }
            for s in state.service {
                let service = [("service", s.path)]
                m.gauge("decos_storage_service_bytes", service).set(s.bytes)
                m.mirror("decos_storage_commits_total", service, total: s.commits)
                if let p50 = s.syncP50Microseconds { m.gauge("decos_storage_sync_seconds", service + [("quantile", "0.5")]).set(p50 / 1e6) }
                if let p99 = s.syncP99Microseconds { m.gauge("decos_storage_sync_seconds", service + [("quantile", "0.99")]).set(p99 / 1e6) }
            }
        }
    }

    public func handle(_ request: Request) async throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "/os/storage not started") }
        switch (request.verb, request.body?.name.local) {
        case (.get, _):
            return try infoset(Self.state(of: kernel))
        case (.submit, "Backup"):
            let b = try request.decode(Backup.self)
            // A copy of the whole state is a read of it: who may not Get the service may not copy it.
            if let denial = kernel.security.authorize(request.principal, .get, path: b.service) { throw denial }
            let bytes = try await kernel.backup(b.service)
            request.attach(BufferRef(id: "backup", buffer: DataBuffer(bytes)))
            return try infoset(BackupResponse(service: b.service, bytes: bytes.count))
        case (.submit, "Restore"):
            let r = try request.decode(Restore.self)
            if let denial = kernel.security.authorize(request.principal, .replace, path: r.service) { throw denial }
            guard let copy = request.message.buffers.first else {
                throw Fault.invalidBody("Restore needs the backup as a buffer beside the body (decos ctl restore URL FILE)")
            }
            let count = try await kernel.restore(r.service, from: copy.buffer.withUnsafeBytes { Array($0) }, for: request)
            return try infoset(RestoreResponse(service: r.service, records: count))
        case (.submit, _):
            throw Fault.invalidBody("Submit to /os/storage takes <Backup> or <Restore>")
        default:
            throw Fault.actionNotSupported(request.verb, "/os/storage")
        }
    }

    /// What Get answers, also read at each scrape of `/metrics`.
    static func state(of kernel: Kernel) -> StorageState {
        var state = StorageState(path: kernel.storage?.directory, service: [])
        if let dir = kernel.storage?.directory {
            var fs = statvfs()
            if statvfs(dir, &fs) == 0 {
                state.sizeBytes = Int(fs.f_blocks) * Int(fs.f_frsize)
                state.freeBytes = Int(fs.f_bavail) * Int(fs.f_frsize)
            }
        }
        for reg in kernel.uris.registrations {
            guard let journal = reg.journal else { continue }
            state.service.append(StoredService(path: reg.path, file: journal.store.file, bytes: journal.store.bytes,
                                               commits: journal.syncs.totals.count,
                                               syncP50Microseconds: journal.syncs.quantile(0.5).map { Double($0) / 1e3 },
                                               syncP99Microseconds: journal.syncs.quantile(0.99).map { Double($0) / 1e3 }))
        }
        return state
    }
}
