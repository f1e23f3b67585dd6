import Infoset
import NIOHTTP1
import ServiceKernel

/// The console (docs/console.md): `GET /` on any node is a page for the whole cluster, made here
/// from the node's own services — `/os/cluster` for the members, each member's `/os/node`,
/// `/directory` for every service, and each service's state — and served from the binary, with
/// nothing fetched from elsewhere. It is whole without JavaScript (forms post to `?form`, each
/// service has a page at `?view`); with it, one streamed response (`/?events`) says which
/// services changed and the page fetches just those blocks again (`?fragment`).
extension Gateway {
    /// What the page shows of one member.
    struct NodeRow {
        var member: Element
        var state: Element?
        var name: String { member.child("Name")?.text ?? "?" }
        var status: String { member.child("Status")?.text ?? "?" }
        func field(_ f: String) -> String? { state?.child(f)?.text.trimmingXMLSpace() }
    }

    /// A service as the page lists it: the gateway path that reaches it on any node, and its state.
    struct ServiceBlock {
        var node: String
        var path: String
        var contract: String
        /// Its Get reply; nil for a service whose type says it answers no Get.
        var state: Message?
        var link: String { "/@\(node)\(path)" }
        var isSystem: Bool { ["/directory", "/constructor", "/manifestloader"].contains(path) || path.hasPrefix("/os/") }
    }

    /// Lists shown in the page and its live fragments; a service's `?view` page shows more.
    static let pageRows = 20
    /// Up to this many nodes, `/` shows every node's services; past it, this node's, and each
    /// other node's are a page of their own (`/?node=b`), so a fleet's page stays small.
    static let wholeClusterNodes = 8

    func nodeRows(_ principal: Principal) async -> [NodeRow] {
        let cluster = await kernel.send(Message(.get, to: "/os/cluster"), as: principal)
        let members = cluster.body?.elements.filter { $0.name.local == "Member" } ?? []
        return await withTaskGroup(of: (Int, Element?).self) { group in
            for (i, m) in members.enumerated() {
                let name = m.child("Name")?.text ?? ""
                guard ["alive", "suspect"].contains(m.child("Status")?.text ?? "") else { continue }
                group.addTask { [kernel] in (i, await kernel.send(Message(.get, to: "decos://\(name)/os/node"), as: principal).body) }
            }
            var rows = members.map { NodeRow(member: $0, state: nil) }
            for await (i, state) in group { rows[i].state = state }
            return rows
        }
    }

    /// The services of the nodes in `only` (every node's without it), each with its state.
    func serviceBlocks(_ principal: Principal, only: Set<String>?) async -> [ServiceBlock] {
        let directory = await kernel.send(Message(.get, to: "/directory"), as: principal)
        let entries = (directory.body?.elements ?? []).map { e in
            (node: e.child("Node")?.text ?? kernel.node, path: e.child("Path")?.text ?? "", contract: e.child("Contract")?.text ?? "")
        }.filter { only?.contains($0.node) ?? true }
        return await withTaskGroup(of: (Int, Message).self) { group in
            for (i, e) in entries.enumerated() where answersGet(e.contract) {
                group.addTask { [kernel] in (i, await kernel.send(Message(.get, to: "decos://\(e.node)\(e.path)"), as: principal)) }
            }
            var states = [Message?](repeating: nil, count: entries.count)
            for await (i, m) in group { states[i] = m }
            return entries.enumerated().map { i, e in ServiceBlock(node: e.node, path: e.path, contract: e.contract, state: states[i]) }
        }
    }

    /// Whether a contract's type answers Get, as far as it says (one that declares nothing may).
    func answersGet(_ contract: String) -> Bool {
        let declared = kernel.contracts.operations[contract] ?? []
        return declared.isEmpty || declared.contains { $0.verb == .get }
    }

    // MARK: pages

    /// `node`: one node's services (`/?node=b`); without it every node's, or this node's alone in
    /// a cluster of more than `wholeClusterNodes`.
    func consolePage(_ principal: Principal, node: String? = nil) async -> Response {
        let nodes = await nodeRows(principal)
        let only: Set<String>? = node.map { [$0] } ?? (nodes.count > Gateway.wholeClusterNodes ? [kernel.node] : nil)
        let services = await serviceBlocks(principal, only: only)
        let pages = only != nil
        var html = "<section id=\"nodes\" data-path=\"/os/cluster\" data-fragment=\"/?nodes\(pages ? "&pages" : "")\">\(nodesTable(nodes, pages: pages))</section>\n"
        if pages, node == nil {
            html += "<p class=\"note\">\(nodes.count) nodes: this node's services are below; each other node's are a page of its own (its name in the table).</p>\n"
        }
        for n in nodes where only?.contains(n.name) ?? true {
            html += nodeSection(n, services.filter { $0.node == n.name })
        }
        let title = (node.map { "node \($0) of the " } ?? "") + "cluster seen from \(kernel.node) · \(nodes.count) node\(nodes.count == 1 ? "" : "s")"
        return ConsoleAssets.page(title: title, node: kernel.node, body: html)
    }

    /// The members with their state; each name links to its section, or with `pages` to its page.
    func nodesTable(_ nodes: [NodeRow], pages: Bool) -> String {
        var html = "<table class=\"list nodes\"><tr><th>Node</th><th>Status</th><th>Uptime</th><th>Memory</th><th>Version</th><th>Mode</th><th>Services</th><th>Address</th></tr>"
        for n in nodes {
            let name = escapeHTML(n.name)
            let link = pages ? "/?node=\(Gateway.queryEscaped(n.name))#node-\(name)" : "#node-\(name)"
            html += "<tr><td><a href=\"\(link)\">\(name)</a></td><td><span class=\"status \(escapeHTML(n.status))\">\(escapeHTML(n.status))</span></td>"
            html += "<td>\(n.field("UptimeSeconds").flatMap(Double.init).map(Self.duration) ?? "")</td>"
            html += "<td>\(n.field("ResidentBytes").flatMap(Int.init).map(Self.bytes) ?? "")</td>"
            html += "<td>\(escapeHTML(n.field("Version") ?? ""))</td><td>\(escapeHTML(n.field("Mode") ?? ""))</td>"
            html += "<td>\(escapeHTML(n.field("Services") ?? ""))</td><td><code>\(escapeHTML(n.member.child("Address")?.text ?? ""))</code></td></tr>"
        }
        return html + "</table>"
    }

    func nodeSection(_ node: NodeRow, _ services: [ServiceBlock]) -> String {
        let name = escapeHTML(node.name)
        var html = "<section class=\"node\" id=\"node-\(name)\"><h2>\(name) <span class=\"status \(escapeHTML(node.status))\">\(escapeHTML(node.status))</span></h2>\n"
        if node.state != nil {
            html += "<div class=\"power\">"
            for (label, body) in [("Reboot", "<Reboot/>"), ("Power off", "<Poweroff/>")] {
                html += ConsoleAssets.actionForm(action: "/@\(node.name)/os/node?form", verb: "Submit", body: body, label: label, kind: "power")
            }
            html += "</div>\n"
        }
        let user = services.filter { !$0.isSystem }
        let system = services.filter(\.isSystem)
        for s in user { html += serviceBlock(s, open: true) }
        if let processes = system.first(where: { $0.path == "/os/processes" }) { html += serviceBlock(processes, open: true) }
        if !system.isEmpty {
            html += "<details class=\"system\"><summary>system services (\(system.count))</summary>\n"
            for s in system where s.path != "/os/processes" { html += serviceBlock(s, open: false) }
            html += "</details>\n"
        }
        return html + "</section>\n"
    }

    func serviceBlock(_ s: ServiceBlock, open: Bool) -> String {
        let link = escapeHTML(s.link)
        var html = "<details class=\"svc\" data-path=\"\(link)\"\(open ? " open" : "")><summary><b>\(escapeHTML(s.path))</b> <code>\(escapeHTML(s.contract))</code>"
        html += " <a href=\"\(link)?view\">page</a> <a href=\"\(link)\">XML</a> <a href=\"\(link)?wsdl\">WSDL</a></summary>\n"
        let state = s.state.map { stateFragment($0, path: s.link) } ?? "<span class=\"none\">no state to show: it answers \(operations(s.contract).map(\.verb.rawValue).joined(separator: ", "))</span>"
        html += "<div class=\"state\">\(state)</div>\n"
        html += sendForm(s.link, contract: s.contract)
        return html + "</details>\n"
    }

    /// A state as the page shows it: its tables, a fault's reason, and a process's buttons.
    func stateFragment(_ reply: Message, path: String, rows: Int = Gateway.pageRows) -> String {
        if let f = reply.fault { return "<p class=\"fault\">\(escapeHTML(f.subcode?.local ?? "\(f.code)")): \(escapeHTML(f.reason))</p>" }
        guard let body = reply.body else { return "<span class=\"none\">no state</span>" }
        if body.name.local == "ProcessList", body.elements.isEmpty {
            return "<span class=\"none\">no supervised processes (the manifest's &lt;Process&gt; elements start them)</span>"
        }
        var html = StateView.html(body, maxRows: rows)
        if body.name.local == "ProcessList" {
            let node = path.hasPrefix("/@") ? String(path.dropFirst(2).prefix { $0 != "/" }) : kernel.node
            for p in body.elements {
                let name = p.child("Name")?.text ?? ""
                html += "<div class=\"process-actions\"><code>\(escapeHTML(name))</code>"
                for action in ["Restart", "Stop"] {
                    var element = Element(action)
                    element.children = [.element(Element("Name", text: name))]
                    html += ConsoleAssets.actionForm(action: "/@\(node)/os/processes?form", verb: "Submit", body: XMLWriter.string(element), label: action, kind: "process")
                }
                html += "</div>"
            }
        }
        return html
    }

    /// The form to send any verb the service declares, its body prefilled with the verb's shape.
    func sendForm(_ link: String, contract: String) -> String {
        let operations = operations(contract)
        var html = "<details class=\"send\"\(answersGet(contract) ? "" : " open")><summary>send a verb</summary>"
        html += "<form class=\"send\" method=\"post\" action=\"\(escapeHTML(link))?form\"><select name=\"verb\">"
        for op in operations {
            html += "<option value=\"\(op.verb.rawValue)\" data-body=\"\(escapeHTML(ConsoleAssets.skeleton(op.input)))\">\(op.verb.rawValue)</option>"
        }
        html += "</select><textarea name=\"body\" rows=\"3\" spellcheck=\"false\">\(escapeHTML(operations.first.map { ConsoleAssets.skeleton($0.input) } ?? ""))</textarea>"
        html += ConsoleAssets.tokenInput + "<button>Send</button></form><output class=\"result\"></output></details>\n"
        return html
    }

    /// The verbs a contract's type declares, or every verb for one that declares none; not Subscribe.
    func operations(_ contract: String) -> [ServiceOperation] {
        let declared = kernel.contracts.operations[contract] ?? []
        return (declared.isEmpty ? Verb.allCases.map { ServiceOperation($0, takes: .any) } : declared).filter { $0.verb != .subscribe }
    }

    /// `GET /path?view`: one service's page, for a browser without JavaScript and for links.
    func viewPage(_ path: String, _ link: String, as principal: Principal) async -> Response {
        let reply = await kernel.send(Message(.get, to: path), as: principal)
        let lookup = await kernel.send(Message(.lookup, to: path), as: principal)
        let contract = lookup.body?.child("Contract")?.text ?? ""
        var html = "<p><a href=\"/\">← the cluster</a> · <a href=\"\(escapeHTML(link))\">XML</a> · <a href=\"\(escapeHTML(link))?wsdl\">WSDL</a> · <code>\(escapeHTML(contract))</code></p>"
        html += "<section data-path=\"\(escapeHTML(link))\"><div class=\"state\">\(stateFragment(reply, path: link, rows: StateView.maxRows))</div>\(sendForm(link, contract: contract))</section>"
        return ConsoleAssets.page(title: link, node: kernel.node, body: html)
    }

    /// A member's uptime as the table shows it. The number comes from another node, so it may be
    /// anything: one no clock gives (not a number, negative, past `Int`) shows as "?", where
    /// `Int(Double)` would trap.
    static func duration(_ seconds: Double) -> String {
        guard seconds >= 0, let s = Int(exactly: seconds.rounded(.down)) else { return "?" }
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : "\((v * 10).rounded() / 10) \(units[u])"
    }
}
