import Dispatch

/// Where storage work that blocks (opening and reading a file, a backup's copy, a first state's
/// commit) runs when a request or a boot asks for it: never on the event loops that run tasks,
/// whose every connection would wait behind it.
private let storageWork = DispatchQueue(label: "decos.storage", attributes: .concurrent)

public func offLoop<T: Sendable>(_ work: @escaping @Sendable () throws(StorageError) -> T) async throws(StorageError) -> T {
    let result: Result<T, StorageError> = await withCheckedContinuation { c in
        storageWork.async {
            do throws(StorageError) { c.resume(returning: .success(try work())) } catch { c.resume(returning: .failure(error)) }
        }
    }
    return try result.get()
}
