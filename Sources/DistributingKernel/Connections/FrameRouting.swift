import Infoset
import NIOCore
import ServiceKernel

/// Frames from authenticated peers: a connection authenticated or closed, and each frame handed
/// to the part it is for.
extension NetworkManager {
    func authenticated(_ connection: PeerConnection, peer: Handshake.Hello, role: Handshake.Role, outbound: Bool) {
        logger.debug("authenticated \(peer.node) (\(role)) \(outbound ? "outbound" : "inbound")")
        // Where it said it listens (a peer may call before membership has told this node about
        // it), and for a connection this node opened, its waiter.
        let hello = ControlLinks.Hello(address: peer.address, planes: role == .control ? peer.planes : nil)
        let ready = links.authenticated(connection, peer: peer.node, hello: hello, outbound: outbound)
        // A peer that says it is in a newer life restarted: before anything it sends on this
        // connection is taken, what was held for its old self ends.
        peerRestarted(peer.node, epoch: peer.epoch, fromHello: true)
        ready?.finish(connection)
    }

    func closed(_ connection: PeerConnection, peer: String, role: Handshake.Role) {
        // Replies come back on the connection the requests went out on: once it is gone, calls
        // pending on that peer cannot be answered, so they fault now rather than at their deadline.
        if links.closed(connection, peer: peer) && role == .control { failPending(on: peer, reason: "connection to node \(peer) lost") }
    }

    func received(_ frame: Wire.Frame, from peer: String, role: Handshake.Role, on connection: PeerConnection, backlog: RequestBacklog) {
        switch frame.known {
        case .request: handleRequest(frame.reader, from: peer, on: connection, backlog: backlog)
        case .reply: handleReply(frame.reader, from: peer)
        case .notify: handleNotify(frame.reader, from: peer, on: connection)
        case .unsubscribe: handleUnsubscribe(frame.payload, from: peer)
        case .swim: handleSWIM(frame.payload, from: peer)
        case .directory: handleDirectory(frame.payload, from: peer)
        case .dataPull: tcp.send(pull: frame.payload, from: peer, on: connection)
        case .dataChunk: break  // chunks are read by a DataLink, never from an event loop's connection
        case .rdmaConnect:
            guard let rdma else { return logger.warning("node \(peer) asked for an RDMA queue pair, and this node offers no RDMA") }
            rdma.connectRequested(frame.payload, from: peer, on: connection)
        case .rdmaAccept: rdma?.accepted(frame.payload, from: peer)
        case .dataProgress: rdma?.progress(frame.payload, from: peer)
        case .error:
            var r = ByteReader(frame.payload)
            logger.warning("peer \(peer) reported: \((try? r.string()) ?? "?")")
        case .hello, .auth, .sealed:  // a handshake frame after the handshake; a SEALED frame inside another, or unasked for
            connection.close()
        case nil:
            if frame.type & Wire.FrameType.optionalBit == 0 {
                logger.warning("peer \(peer) sent unknown frame type \(frame.type); closing")
                connection.close()
            }
        }
    }
}
