import Storage
import Infoset

/// A SOAP 1.2 fault, and the error every failure in the node is expressed as.
public struct Fault: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case sender = "Sender"
        case receiver = "Receiver"
        case versionMismatch = "VersionMismatch"
        case mustUnderstand = "MustUnderstand"
    }

    public var code: Code
    /// A qualified subcode such as `decos:UnknownService`, naming the failure for programs.
    public var subcode: QName?
    public var reason: String
    public var detail: Element?

    public init(_ code: Code, _ subcode: String? = nil, _ reason: String, detail: Element? = nil) {
        self.code = code
        self.subcode = subcode.map { QName(Fault.decosNamespace, $0) }
        self.reason = reason
        self.detail = detail
    }

    public init(code: Code, subcode: QName?, reason: String, detail: Element? = nil) {
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.detail = detail
    }

    public static let decosNamespace = "urn:decos:fault"

    public var description: String {
        "\(code.rawValue)\(subcode.map { "/" + $0.local } ?? ""): \(reason)"
    }

    // The faults the kernel itself raises; services may throw their own.
    public static func malformed(_ reason: String) -> Fault { Fault(.sender, "Malformed", reason) }
    public static func unknownService(_ uri: String) -> Fault { Fault(.sender, "UnknownService", "no service at \(uri)") }
    public static func actionNotSupported(_ verb: Verb, _ uri: String) -> Fault {
        Fault(code: .sender, subcode: QName("http://www.w3.org/2005/08/addressing", "ActionNotSupported"),
              reason: "\(uri) does not accept \(verb.rawValue)")
    }
    public static func invalidBody(_ reason: String) -> Fault { Fault(.sender, "InvalidBody", reason) }
    public static func denied(_ reason: String) -> Fault { Fault(.sender, "Denied", reason) }
    public static func unreachable(_ reason: String) -> Fault { Fault(.receiver, "Unreachable", reason) }
    /// A message, or the buffers it refers to, larger than a limit; the reason names the limit.
    public static func tooLarge(_ reason: String) -> Fault { Fault(.sender, "TooLarge", reason) }
    public static func timeout(_ reason: String) -> Fault { Fault(.receiver, "Timeout", reason) }
    /// A request that reached a node after it began to stop: not taken; another node, or this one
    /// once it is back, may take it.
    public static func stopping(_ node: String) -> Fault {
        Fault(.receiver, "Stopping", "node \(node) is stopping: it takes no new request (try another node, or this one once it is back)")
    }
    /// The node's buffer pool cannot hold a buffer now; the same request may succeed later.
    public static func exhausted(_ e: BufferPool.Exhausted) -> Fault { Fault(.receiver, "ResourceExhausted", e.description) }
    public static func serviceFailed(_ uri: String, _ error: any Error) -> Fault {
        Fault(.receiver, "ServiceFailed", "\(uri) failed: \(error)")
    }

    /// A durable service's file that cannot be used: the service does not start.
    public static func storageRefused(_ error: StorageError) -> Fault {
        Fault(.receiver, "StorageRefused", "\(error)")
    }

    /// A durable service's change that did not reach storage: not made, in memory either.
    public static func storageFailed(_ uri: String, _ error: StorageError) -> Fault {
        Fault(.receiver, "StorageFailed", "\(uri): the change was not stored, and is not made: \(error)")
    }
}
