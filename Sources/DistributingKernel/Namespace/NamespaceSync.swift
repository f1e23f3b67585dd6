import Infoset
import NIOCore
import ServiceKernel

/// The shell around this node's `NamespaceReplica`: it feeds the replica this node's changes,
/// the DIRECTORY frames peers send and the sync clock, and carries out what the replica answers
/// (frames to peers, notifications to `/directory` subscribers). The replica has a lock of its
/// own; membership is read from the view it publishes, never under its own lock.
extension NetworkManager {
    /// Entries of the other nodes this node knows, for `/directory`.
    public var remoteEntries: [DirectoryEntry] { namespace.withLock { $0.remoteEntries } }

    /// Who the replica may take tables from: members believed live, as membership last
    /// published them. Read under the replica's lock (`memberView`'s lock is never held while
    /// taking the replica's): a member declared dead is published before its table is forgotten,
    /// so a table of it that arrives meanwhile is either refused here or forgotten after.
    private func liveMembers() -> NamespaceReplica.Live {
        let members = memberView.withLock { $0.members }
        return { members[$0].map { $0.status <= .suspect } ?? false }
    }

    func localTableChanged() {
        let peers = memberView.withLock { $0.live.map(\.name) }
        // The entries are read under the replica's lock, so two changes are numbered in the
        // order their tables were read.
        carryOut(namespace.withLock { $0.localChanged(kernel.uris.entries, peers: peers) })
    }

    /// Every sync interval: the summary to one random live peer.
    func antiEntropy() {
        guard let peer = memberView.withLock({ $0.live.filter { $0.status == .alive }.randomElement() }) else { return }
        carryOut([namespace.withLock { $0.sync(with: peer.name) }])
    }

    /// A member that is new, back, or restarted is shown what this node holds now.
    func greet(_ peer: String) {
        carryOut(namespace.withLock { $0.greet(peer) })
    }

    /// A member that died, left, or went back in time loses its table here.
    func forgetTable(of owner: String) {
        carryOut(namespace.withLock { $0.forget(owner) })
    }

    func handleDirectory(_ payload: [UInt8], from peer: String) {
        let message: NamespaceReplica.Message
        do { message = try NamespaceReplica.Message(decoding: payload) } catch {
            return logger.warning("malformed directory message from \(peer): \(error)")
        }
        carryOut(namespace.withLock { $0.receive(message, from: peer, live: liveMembers()) })
    }

    private func carryOut(_ effects: [NamespaceReplica.Effect]) {
        for effect in effects {
            switch effect {
            case .send(let message, let to):
                guard let address = address(of: to) else { continue }
                sendFrame(message.frame, to: to, address: address)
            case .inserted(let e): kernel.publish(Message(.insert, to: "", body: try? infoset(e)), from: "/directory")
            case .deleted(let e): kernel.publish(Message(.delete, to: "", body: try? infoset(e)), from: "/directory")
            case .refused(let why): logger.warning("\(why)")
            }
        }
    }

    func sendFrame(_ frame: Wire.Frame, to name: String, address: String) {
        Task { [weak self] in
            guard let self, let channel = await self.connection(to: name, address: address) else { return }
            channel.send(frame)
        }
    }
}
