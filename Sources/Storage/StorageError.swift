/// Why storage could not do what was asked, naming the file: what an operator reads in the fault
/// or the log line and acts on.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The disk (or the file system's quota) is full: the write did not happen.
        case full
        /// The file is not what this release wrote or reads: damaged, foreign, from a newer schema,
        /// or for another contract. It is kept as it is; the service does not start on it.
        case refused
        /// Any other failure of the engine or the disk (I/O error, read-only file system, …).
        case failed
    }

    public var kind: Kind
    public var file: String
    public var message: String

    public init(_ kind: Kind, file: String, _ message: String) {
        self.kind = kind
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}
