import ArgumentParser
import Decos
import Dispatch
import Gateway
import Infoset
import Logging
import NIOCore
import ProcessKernel
import ServiceKernel
import StandardServices
#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The `decos` command line. A service author's own binary runs the same commands with its
/// contracts added: `await DecosCLI.main(extra: Contracts([Greeter.self]))`.
public enum DecosCLI {
    /// Contracts beyond the standard ones, set once before the command runs.
    nonisolated(unsafe) static var extra = Contracts()

    static var contracts: Contracts { SystemServices.contracts.merging(extra) }

    public static func main(extra: Contracts = Contracts()) async {
        self.extra = extra
        if CommandLine.arguments.first?.split(separator: "/").last == "modprobe" { Modprobe.main(CommandLine.arguments) }
        if InitProcess.isAppliance { await Appliance.main() }
        await DecosCommand.main()
    }
}

struct DecosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decos",
        abstract: "One binary that is a whole node: services with URIs, verbs in SOAP messages.",
        version: "decos \(DecosVersion.string)",
        subcommands: [Run.self, Ctl.self, ManifestCommand.self])
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a node in hosted mode on a manifest.")

    @Argument(help: "The node's manifest.") var manifest = "examples/node.xml"
    @Option(help: "Gateway address HOST:PORT (overrides the manifest; port 0 picks a free one).") var http: String?
    @Option(help: "Node name (overrides the manifest).") var node: String?
    @Option(help: "Address HOST:PORT to listen for cluster peers on (overrides the manifest).") var listen: String?
    @Option(help: "A cluster peer HOST:PORT to join through; repeatable (overrides the manifest's seeds).") var seed: [String] = []
    @Option(help: "File holding the cluster key (overrides the manifest).") var clusterKey: String?
    @Option(help: "Data planes offered for buffers, in order, e.g. rdma,tcp (overrides the manifest's <DataPlane prefer>).") var dataplane: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"
    @Option(help: "The directory durable services keep their state in, made if missing (overrides the manifest's <Storage path>).") var data: String?
    @Option(help: "Forward log lines to a syslog server, udp://HOST:PORT (overrides the manifest's <Logging syslog>).") var syslog: String?

    @Option(help: "File holding the operator's bearer token, allowed every verb (docs/security.md). Without it the node makes a fresh one and says where it wrote it.") var operatorToken: String?

    func run() async throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level \(logLevel)") }
        bootstrapLogging(level)
        var m: Manifest
        do { m = try Node.loadManifest(manifest) } catch { fail(error.description) }
        let overrides = Overrides(http: http, node: node, listen: listen, seeds: seed, clusterKey: clusterKey, dataPlanes: dataplane, syslog: syslog, data: data)
        for problem in overrides.apply(to: &m) { throw ValidationError(problem) }
        let secret: String
        if let operatorToken {
            guard let s = readSecret(operatorToken) else { fail("cannot read the operator token \(operatorToken), or it is shorter than 16 characters") }
            secret = s
        } else {
            secret = OperatorToken.fresh()
        }
        let os = OperatingSystem(supervisor: nodeSupervisor())
        let booted: Node
        do { booted = try await Node.boot(m, extra: DecosCLI.extra, os: os, operatorSecret: secret) } catch { fail(String(describing: error)) }
        // A fresh token goes where `decos ctl` finds it for this gateway's port.
        let tokenPort = operatorToken == nil ? booted.httpAddress?.port : nil
        var heldToken: Int32?
        if let port = tokenPort {
            do throws(OperatorToken.Problem) { heldToken = try OperatorToken.write(secret, port: port) } catch { fail("decos: \(error.description)") }
            print("decos: operator token in \(OperatorToken.path(port: port)) (decos ctl sends it to this node; the console asks for it)")
        }
        print(NodeRunner.readyLine(booted))
        let action = await NodeRunner.serve(booted)
        if let port = tokenPort, let heldToken { OperatorToken.remove(port: port, held: heldToken) }
        guard let action else { Glibc.exit(1) }
        print("decos: node \(booted.kernel.node) stopped")
        if action == .reboot {
            // Hosted, a reboot is the same command started afresh in this process's place.
            print("decos: restarting")
            let argv = CommandLine.arguments.map { strdup($0) } + [nil]
            execv("/proc/self/exe", argv)
            fail("cannot restart: \(String(cString: strerror(errno)))")
        }
    }
}

struct Ctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a verb to a service over HTTP and print the reply.",
        discussion: "Example: decos ctl update http://127.0.0.1:7480/counter --body '<Increment><By>2</By></Increment>'\nSubscribe streams notifications until interrupted. decos ctl poweroff http://HOST:PORT ends a node.\ndecos ctl backup http://HOST:PORT/kv > FILE copies a durable service's stored state; decos ctl restore http://HOST:PORT/kv FILE makes a copy its state.")

    @Argument(help: "The verb: \(Verb.allCases.map(\.rawValue).joined(separator: ", ")); or poweroff, reboot (to the node's /os/node); or backup, restore (a durable service's state, through the node's /os/storage).") var verb: String
    @Argument(help: "The service's URL, e.g. http://127.0.0.1:7480/counter (https:// for a gateway serving TLS).") var url: String
    @Argument(help: "For restore: the backup file (what backup wrote).") var file: String?
    @Option(help: "The body as XML, or @FILE to read it from a file.") var body: String?
    @Option(help: "A bearer token for the gateway, or @FILE to read it from a file. Without it, a node on this machine's loopback gets the operator token its `decos run` wrote.") var token: String?
    @Flag(help: "Send no token, not even a loopback node's operator token.") var anonymous = false
    @Option(help: "For https://: the PEM file of the CA (or the node's own self-signed certificate) the server's certificate must be signed by; the system's CAs without it.") var cacert: String?
    @Option(name: .customLong("buffer"), help: "A buffer to send beside the body (as MTOM): @FILE, or ID=@FILE; the id is the file's name unless given. Repeat for more.") var buffers: [String] = []
    @Option(help: "Where buffers that come back are written, each to a file named by its id.") var bufferDir = "."

    func run() async throws {
        setvbuf(stdout, nil, _IOLBF, 0)
        guard var target = HTTPClient.URL(url) else { throw ValidationError("\(url) is not an http://HOST:PORT/PATH or https://… URL") }
        if file != nil && verb.lowercased() != "restore" { throw ValidationError("only restore takes a FILE after the URL (a body is --body @FILE)") }
        let v: Verb
        var body: Element?
        var backup = false
        var restoring: BufferRef?
        if let power = ["poweroff": "Poweroff", "reboot": "Reboot"][verb.lowercased()] {
            // Shorthands for Submit <Poweroff/> (or <Reboot/>) to the node's /os/node.
            v = .submit
            body = Element(power)
            if target.path == "/" { target.path = "/os/node" }
        } else if let copy = ["backup": "Backup", "restore": "Restore"][verb.lowercased()] {
            // Submit <Backup> (or <Restore>) naming the service, to its node's /os/storage.
            v = .submit
            let (node, service) = Self.splitNode(target.path)
            guard service != "/" else { throw ValidationError("\(verb) needs a durable service's URL, e.g. http://127.0.0.1:7480/kv") }
            target.path = node + "/os/storage"
            body = Element(copy, children: [.element(Element("Service", text: service))])
            if copy == "Backup" {
                guard isatty(1) == 0 else { throw ValidationError("backup writes the copy to standard output: decos ctl backup URL > FILE") }
                backup = true
            } else {
                guard let file else { throw ValidationError("restore needs the backup file: decos ctl restore URL FILE") }
                restoring = try bufferArgument("backup=@" + file)
            }
        } else {
            guard let parsed = Verb(name: verb) else {
                throw ValidationError("unknown verb \(verb); verbs are \(Verb.allCases.map(\.rawValue).joined(separator: ", ")), or poweroff and reboot")
            }
            v = parsed
            body = try parsedBody()
        }
        var message = Message(v, to: target.path, body: body, buffers: try buffers.map(bufferArgument) + (restoring.map { [$0] } ?? []))
        message.messageID = "urn:uuid:" + uuid()
        // Buffers that come back do so as MTOM parts, not Base64 in the envelope.
        var headers = [("Accept", "multipart/related, application/soap+xml")]
        let payload: [UInt8]
        if message.buffers.isEmpty {
            headers.append(("Content-Type", SOAP.contentType))
            payload = SOAP.encode(message)
        } else {
            let mtom = MTOM.encode(message)
            headers.append(("Content-Type", mtom.contentType))
            payload = mtom.body
        }
        if var token = token ?? (anonymous ? nil : OperatorToken.forNode(host: target.host, port: target.port)) {
            if token.hasPrefix("@") {
                let path = String(token.dropFirst())
                guard let secret = readSecret(path) else { fail("cannot read a token of 16 characters or more from \(path)", code: 2) }
                token = secret
            }
            headers.append(("Authorization", "Bearer \(token)"))
        }
        // A gap (notifications the node could not deliver) is followed by the state as it is now.
        let (stateURL, stateHeaders, cacert) = (target, headers.filter { $0.0 == "Authorization" }, self.cacert)
        let splitter = LineSplitter {
            guard let r = try? await HTTPClient.send(.GET, stateURL, headers: stateHeaders, cacert: cacert) else { return }
            print("state now:\n" + ((try? XMLReader.parse(r.body)).map(XMLWriter.pretty) ?? String(decoding: r.body, as: UTF8.self)), terminator: "")
        }
        let onChunk: (@Sendable ([UInt8]) async throws -> Void)? = v == .subscribe ? { @Sendable chunk in await splitter.feed(chunk) } : nil
        let response: HTTPClient.Response
        do {
            response = try await HTTPClient.send(.POST, target, headers: headers, body: payload, cacert: cacert, onBodyChunk: onChunk)
        } catch {
            fail("\(error)", code: 2)
        }
        if v == .subscribe { return }
        if backup {
            try writeBackup(response.body, type: response.header("content-type") ?? "", status: response.status)
            return
        }
        try show(response.body, type: response.header("content-type") ?? "", status: response.status)
    }

    /// `/@b/kv` → ("/@b", "/kv"): a service reached through another node keeps that node's prefix.
    static func splitNode(_ path: String) -> (String, String) {
        guard path.hasPrefix("/@") else { return ("", path) }
        let rest = path.dropFirst(2)
        guard let slash = rest.firstIndex(of: "/") else { return (path, "/") }
        return ("/@" + rest[..<slash], String(rest[slash...]))
    }

    /// `@FILE` or `ID=@FILE`: the file's bytes as a buffer.
    func bufferArgument(_ argument: String) throws -> BufferRef {
        let (id, file): (String, Substring)
        if argument.hasPrefix("@") {
            file = argument.dropFirst()
            id = String(file.split(separator: "/").last ?? file)
        } else if let eq = argument.firstIndex(of: "="), argument[argument.index(after: eq)...].hasPrefix("@") {
            id = String(argument[..<eq])
            file = argument[argument.index(eq, offsetBy: 2)...]
        } else {
            throw ValidationError("--buffer takes @FILE or ID=@FILE (got \(argument))")
        }
        guard let bytes = readFile(String(file)) else { fail("cannot read \(file)", code: 2) }
        return BufferRef(id: id, buffer: DataBuffer(bytes))
    }

    func parsedBody() throws -> Element? {
        guard let body else { return nil }
        let (text, source): ([UInt8], String)
        if body.hasPrefix("@") {
            let path = String(body.dropFirst())
            guard let bytes = readFile(path) else { fail("cannot read \(path)", code: 2) }
            (text, source) = (bytes, path)
        } else {
            (text, source) = (Array(body.utf8), "--body")
        }
        do { return try XMLReader.parse(text) } catch { fail("\(source):\(error.line):\(error.column): \(error.message)", code: 2) }
    }

    /// The backup's bytes to standard output, and what it holds to standard error.
    func writeBackup(_ bytes: [UInt8], type: String, status: Int) throws {
        let reply = try decodeReply(bytes, type: type, status: status)
        guard let copy = reply.buffers.first(where: { $0.id == "backup" }) else { fail("the node sent no backup (HTTP \(status))") }
        let written = copy.buffer.withUnsafeBytes { p -> Bool in
            var done = 0
            while done < p.count {
                let n = write(1, p.baseAddress! + done, p.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                done += n
            }
            return true
        }
        guard written else { fail("cannot write the backup to standard output: \(String(cString: strerror(errno)))", code: 2) }
        var stderr = StandardError()
        print("backup of \(reply.body?.child("Service")?.text ?? "the service"): \(copy.length) bytes", to: &stderr)
    }

    func decodeReply(_ bytes: [UInt8], type: String, status: Int) throws -> Message {
        let reply: Message
        do {
            reply = type.lowercased().hasPrefix("multipart/related")
                ? try MTOM.decode(contentType: type, body: bytes, pool: BufferPool(keepFree: 0))
                : try SOAP.decode(bytes)
        } catch {
            fail("HTTP \(status): \(String(decoding: bytes, as: UTF8.self))")
        }
        if let f = reply.fault {
            fail("fault (HTTP \(status)): \(f.code.rawValue)\(f.subcode.map { " \($0.local)" } ?? ""): \(f.reason)")
        }
        return reply
    }

    func show(_ bytes: [UInt8], type: String, status: Int) throws {
        let reply = try decodeReply(bytes, type: type, status: status)
        if let b = reply.body { print(XMLWriter.pretty(b), terminator: "") }
        for b in reply.buffers { save(b) }
    }

    /// Writes a returned buffer to `bufferDir`/ID, the id made a plain file name.
    func save(_ b: BufferRef) {
        var name = String(b.id.map { $0 == "/" || $0 == "\0" ? "_" : $0 })
        if name.isEmpty || name.hasPrefix(".") { name = "_" + name }
        let path = bufferDir + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { fail("cannot write buffer \(b.id) to \(path): \(String(cString: strerror(errno)))", code: 2) }
        defer { close(fd) }
        let written = b.buffer.withUnsafeBytes { p -> Int in
            var done = 0
            while done < p.count {
                let n = write(fd, p.baseAddress! + done, p.count - done)
                if n <= 0 { return -1 }
                done += n
            }
            return done
        }
        guard written == b.length else { fail("cannot write buffer \(b.id) to \(path): \(String(cString: strerror(errno)))", code: 2) }
        var stderr = StandardError()
        print("buffer \(b.id): \(b.length) bytes written to \(path)", to: &stderr)
    }
}

/// Prints each envelope of a subscription stream (one per line) as it arrives.
actor LineSplitter {
    var pending: [UInt8] = []
    /// Called after a gap is printed: the caller shows the state afresh.
    let onGap: @Sendable () async -> Void

    init(onGap: @escaping @Sendable () async -> Void) { self.onGap = onGap }

    func feed(_ chunk: [UInt8]) async {
        pending += chunk
        while let nl = pending.firstIndex(of: 0x0A) {
            let line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            guard let m = try? SOAP.decode(line) else { print(String(decoding: line, as: UTF8.self)); continue }
            if m.isGap {
                print("gap: notifications from \(m.from ?? "?") may have been missed (a node was cut off or restarted)")
                await onGap()
                continue
            }
            switch m.kind {
            case .response: print("subscribed to \(m.body?.child("Publisher")?.text ?? "?")")
            case .notification, .request: print("\(m.verb.rawValue) from \(m.from ?? "?"):\n" + (m.body.map(XMLWriter.pretty) ?? ""), terminator: "")
            case .fault: print("fault: \(m.fault?.reason ?? "")")
            }
        }
    }
}

struct ManifestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "manifest", abstract: "Work with manifests.",
                                                    subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate a manifest; errors are reported as FILE:LINE:COLUMN.")
        @Argument(help: "The manifest file.") var file: String
        @Option(help: "Check it as run with --data DIR (boot/mkimage.sh gives /data, the appliance's data disk).") var data: String?

        func run() async throws {
            do {
                var m = try Node.loadManifest(file)
                if m.storage == nil, let data { m.storage = data }
                try Node.check(m, contracts: DecosCLI.contracts)
                let binding = m.gateway.map { "gateway on \($0.host):\($0.port)" } ?? "no network binding"
                print("\(file): ok (node \(m.node ?? "<hostname>"), \(m.services.count) services, \(binding))")
            } catch {
                fail(error.description)
            }
        }
    }
}

func hostPort(_ a: SocketAddress) -> String {
    let host = a.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "?"
    return "\(host):\(a.port ?? 0)"
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    var stderr = StandardError()
    print(message, to: &stderr)
    exit(code)
}

struct StandardError: TextOutputStream {
    mutating func write(_ s: String) { fputs(s, Glibc.stderr) }
}

func uuid() -> String {
    var g = SystemRandomNumberGenerator()
    var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
    bytes[6] = bytes[6] & 0x0F | 0x40
    bytes[8] = bytes[8] & 0x3F | 0x80
    let hex = bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
    return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]].map { $0.joined() }.joined(separator: "-")
}
