import ServiceKernel
import Synchronization

/// How much of the node the gateway's clients hold at once: connections, requests being answered,
/// and streams (event streams and SOAP subscriptions), each in all and per client address (half of
/// the node's requests and streams at most for one client). Past a cap the client is answered 503
/// with `Retry-After` at once, so neither many clients nor one client can take the node's memory
/// or every task it can run.
final class Admission: Sendable {
    enum Kind { case request, stream }

    struct Counts {
        var connections = 0
        var byClient: [String: Int] = [:]
        var requests = 0
        var requestsByClient: [String: Int] = [:]
        var streams = 0
        var streamsByClient: [String: Int] = [:]
    }

    let binding: GatewayBinding
    private let counts = Mutex(Counts())

    init(binding: GatewayBinding) { self.binding = binding }

    var current: Counts { counts.withLock { $0 } }

    /// Takes a connection slot for `client` (its address); nil if taken, else why not.
    func openConnection(from client: String) -> String? {
        counts.withLock { c in
            if c.connections >= binding.maxConnections { return "the gateway has its most connections open (\(binding.maxConnections))" }
            let mine = c.byClient[client, default: 0]
            if mine >= binding.maxConnectionsPerClient { return "\(client) has its most connections open (\(binding.maxConnectionsPerClient))" }
            c.connections += 1
            c.byClient[client] = mine + 1
            return nil
        }
    }

    func closeConnection(from client: String) {
        counts.withLock { c in
            c.connections -= 1
            let left = c.byClient[client, default: 1] - 1
            c.byClient[client] = left > 0 ? left : nil
        }
    }

    /// Takes a request's or a stream's slot for `client`; nil if taken, else why not.
    func take(_ kind: Kind, from client: String) -> String? {
        counts.withLock { c in
            switch kind {
            case .request:
                if c.requests >= binding.maxRequestsInFlight { return "the gateway is answering its most requests at once (\(binding.maxRequestsInFlight))" }
                let mine = c.requestsByClient[client, default: 0]
                if mine >= max(1, binding.maxRequestsInFlight / 2) { return "\(client) has its most requests being answered (\(mine))" }
                c.requests += 1
                c.requestsByClient[client] = mine + 1
            case .stream:
                if c.streams >= binding.maxStreams { return "the gateway has its most streams open (\(binding.maxStreams))" }
                let mine = c.streamsByClient[client, default: 0]
                if mine >= max(1, binding.maxStreams / 2) { return "\(client) has its most streams open (\(mine))" }
                c.streams += 1
                c.streamsByClient[client] = mine + 1
            }
            return nil
        }
    }

    func release(_ kind: Kind, from client: String) {
        counts.withLock { c in
            switch kind {
            case .request:
                c.requests -= 1
                let left = c.requestsByClient[client, default: 1] - 1
                c.requestsByClient[client] = left > 0 ? left : nil
            case .stream:
                c.streams -= 1
                let left = c.streamsByClient[client, default: 1] - 1
                c.streamsByClient[client] = left > 0 ? left : nil
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
