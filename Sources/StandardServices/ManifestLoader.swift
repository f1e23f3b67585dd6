import Infoset
import ProcessKernel
import ServiceKernel

/// `/manifestloader`: creates the services of another manifest, all or none.
///
/// Submit `<LoadManifest><Path>/etc/more.xml</Path></LoadManifest>`, or the `<Manifest>` itself as
/// the body. A loaded manifest may not carry `<Security>` or `<Network>`: those come from the boot
/// manifest only, so loading cannot widen what the node allows.
public actor ManifestLoader: Service {
    public static let contract = "urn:decos:manifestloader"
    public static let operations = [ServiceOperation(.submit, takes: .any, returns: .of(LoadManifestResponse.self)), ServiceOperation(.insert, takes: .any, returns: .of(LoadManifestResponse.self))]

    public struct LoadManifest: Codable, Sendable {
        public var path: String
    }

    public struct LoadManifestResponse: Codable, Sendable {
        public var uri: [String]
    }

    private var kernel: Kernel?

    public init(config: ServiceConfig) {}

    public func start(_ context: ServiceContext) async throws { kernel = context.kernel }

    public func handle(_ request: Request) async throws -> Element? {
        guard let kernel else { throw Fault(.receiver, "NotStarted", "manifest loader not started") }
        guard request.verb == .submit || request.verb == .insert else {
            throw Fault.actionNotSupported(request.verb, "/manifestloader")
        }
        let manifest: Manifest
        if let body = request.body, body.name == QName(Manifest.namespace, "Manifest") {
            manifest = try parse(XMLWriter.bytes(body), file: "<request body>")
        } else {
            let load = try request.decode(LoadManifest.self)
            guard let bytes = readFile(load.path) else {
                throw Fault(.sender, "NotFound", "cannot read manifest \(load.path)")
            }
            manifest = try parse(bytes, file: load.path)
        }
        if manifest.security != nil || manifest.gateway != nil || manifest.cluster != nil || !manifest.processes.isEmpty || manifest.storage != nil {
            throw Fault.invalidBody("\(manifest.file): a loaded manifest may not hold <Security>, <Network>, <Storage> or <Process>; those come from the boot manifest")
        }
        for s in manifest.services where kernel.contracts.factories[s.contract] == nil {
            throw Fault(.sender, "UnknownContract", "\(s.location.map { "\($0): " } ?? "")no service implements \(s.contract)")
        }
        var created: [Registration] = []
        do {
            for s in manifest.services { created.append(try await kernel.create(s, for: request)) }
        } catch {
            for r in created.reversed() { try? await kernel.drop(r.path, for: request) }
            throw error
        }
        return try infoset(LoadManifestResponse(uri: created.map(\.uri)))
    }

    private func parse(_ bytes: [UInt8], file: String) throws(Fault) -> Manifest {
        do { return try Manifest.parse(bytes, file: file) } catch { throw Fault.invalidBody(error.description) }
    }
}
