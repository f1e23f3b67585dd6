import NIOCore
import ServiceKernel
import Synchronization

/// The requests a peer's connection has handed to this node and not yet seen answered. Past
/// `limit` the connection stops reading (the peer's own writes then back up, as TCP meant them
/// to), and reads again once half of them are answered: a peer cannot make this node hold an
/// unbounded number of requests, and their tasks, however fast it sends.
final class RequestBacklog: Sendable {
    static let limit = 4096

    /// Turns the connection's reading on or off.
    let reading: @Sendable (Bool) -> Void
    /// The node's count of answers owed to peers, over all connections (a stopping node waits for it).
    let owed: AnswersOwed?
    private let count = Atomic<Int>(0)
    private let paused = Atomic<Bool>(false)

    init(owed: AnswersOwed? = nil, reading: @escaping @Sendable (Bool) -> Void) {
        self.owed = owed
        self.reading = reading
    }

    convenience init(_ channel: any Channel, owed: AnswersOwed?) {
        self.init(owed: owed) { on in channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in } }
    }

    var waiting: Int { count.load(ordering: .relaxed) }

    /// Counts a request taken; false, and nothing counted, once the node's count of answers owed
    /// is closed (the node is stopping).
    @discardableResult
    func began() -> Bool {
        guard owed?.begin() ?? true else { return false }
        if count.add(1, ordering: .relaxed).newValue >= Self.limit, !paused.exchange(true, ordering: .relaxed) { reading(false) }
        return true
    }

    func ended() {
        owed?.end()
        if count.subtract(1, ordering: .relaxed).newValue <= Self.limit / 2, paused.load(ordering: .relaxed),
           paused.exchange(false, ordering: .relaxed) { reading(true) }
    }
}
