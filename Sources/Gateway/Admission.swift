import ServiceKernel
import Synchronization

/// How much of the node the gateway's clients hold at once: connections, requests being answered,
/// and streams (event streams and SOAP subscriptions), each in all and per client address (half of
/// the node's requests and streams at most for one client). Past a cap the client is answered 503
/// with `Retry-After` at once, so neither many clients nor one client can take the node's memory
/// or every task it can run.
final class Admission: Sendable {
    enum Kind { case request, stream }

    /// What is held of one kind, in all and by client address.
    struct Tally {
        private(set) var all = 0
        private var byClient: [String: Int] = [:]

        /// Takes one for `client` unless `cap` in all or `perClient` for it is reached; nil if
        /// taken, else why not (`what` names the kind, plural).
        mutating func take(for client: String, cap: Int, perClient: Int, _ what: String) -> String? {
            if all >= cap { return "the gateway holds its most \(what) (\(cap))" }
            let mine = byClient[client, default: 0]
            if mine >= perClient { return "\(client) holds its most \(what) (\(perClient))" }
            all += 1
            byClient[client] = mine + 1
            return nil
        }

        mutating func release(for client: String) {
            all -= 1
            let left = byClient[client, default: 1] - 1
            byClient[client] = left > 0 ? left : nil
        }
    }

    struct Counts {
        var connections = Tally()
        var requests = Tally()
        var streams = Tally()
    }

    let binding: GatewayBinding
    private let counts = Mutex(Counts())

    init(binding: GatewayBinding) { self.binding = binding }

    var current: (connections: Int, requests: Int, streams: Int) {
        counts.withLock { ($0.connections.all, $0.requests.all, $0.streams.all) }
    }

    /// Takes a connection slot for `client` (its address); nil if taken, else why not.
    func openConnection(from client: String) -> String? {
        counts.withLock { $0.connections.take(for: client, cap: binding.maxConnections, perClient: binding.maxConnectionsPerClient, "connections open") }
    }

    func closeConnection(from client: String) {
        counts.withLock { $0.connections.release(for: client) }
    }

    /// Takes a request's or a stream's slot for `client`; nil if taken, else why not. One client
    /// may hold half the node's requests or streams.
    func take(_ kind: Kind, from client: String) -> String? {
        counts.withLock { c in
            switch kind {
            case .request:
                c.requests.take(for: client, cap: binding.maxRequestsInFlight, perClient: max(1, binding.maxRequestsInFlight / 2), "requests being answered")
            case .stream:
                c.streams.take(for: client, cap: binding.maxStreams, perClient: max(1, binding.maxStreams / 2), "streams open")
            }
        }
    }

    func release(_ kind: Kind, from client: String) {
        counts.withLock { c in
            switch kind {
            case .request: c.requests.release(for: client)
            case .stream: c.streams.release(for: client)
            }
        }
    }

    /// The answer past a cap: the client may try again in a second.
    static func busy(_ reason: String) -> Gateway.Response {
        var r = Gateway.Response.fault(Fault(.receiver, "Busy", reason), status: .serviceUnavailable)
        r.extraHeaders.append(("Retry-After", "1"))
        return r
    }
}
