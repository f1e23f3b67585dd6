import Infoset

/// A service's state (an infoset) as HTML people read: a list of records is a table with a column
/// per field, a record a two-column table, text is text. The console's page, its no-JavaScript
/// pages and the fragments it swaps in live all use this one rendering.
enum StateView {
    /// Rows shown of one list; the rest are counted, and the XML has them all.
    static let maxRows = 100

    static func html(_ e: Element, maxRows: Int = maxRows) -> String {
        var out = ""
        render(e, rows: maxRows, into: &out)
        return out
    }

    /// Children grouped by name, in order of first appearance.
    static func groups(_ e: Element) -> [(name: String, items: [Element])] {
        var order: [String] = []
        var items: [String: [Element]] = [:]
        for c in e.elements {
            if items[c.name.local] == nil { order.append(c.name.local) }
            items[c.name.local, default: []].append(c)
        }
        return order.map { ($0, items[$0]!) }
    }

    static func isLeaf(_ e: Element) -> Bool { e.elements.isEmpty }

    static func render(_ e: Element, rows: Int, into out: inout String) {
        if isLeaf(e) {
            let text = e.text.trimmingXMLSpace()
            out += text.isEmpty ? "<span class=\"none\">—</span>" : escapeHTML(text)
            return
        }
        let gs = groups(e)
        // A state that is one list (a directory, a store's entries) is that list's table.
        if gs.count == 1, gs[0].items.count > 1 || !isLeaf(gs[0].items[0]) {
            list(gs[0].name, gs[0].items, rows: rows, into: &out)
            return
        }
        out += "<table class=\"record\">"
        for g in gs {
            out += "<tr><th>\(escapeHTML(g.name))</th><td>"
            if g.items.count == 1 { render(g.items[0], rows: rows, into: &out) } else { list(g.name, g.items, rows: rows, into: &out) }
            out += "</td></tr>"
        }
        out += "</table>"
    }

    /// Items of one name: a table with a column per field when each is a flat record, else each
    /// rendered in turn. Long lists show their last rows (a log's newest lines).
    static func list(_ name: String, _ all: [Element], rows: Int, into out: inout String) {
        let items = all.suffix(rows)
        if all.count > items.count {
            out += "<p class=\"note\">the last \(items.count) of \(all.count) \(escapeHTML(name)) (the XML has all)</p>"
        }
        let flat = items.allSatisfy { item in item.elements.allSatisfy(isLeaf) }
        guard flat, items.contains(where: { !isLeaf($0) }) else {
            out += "<ol class=\"items\">"
            for item in items {
                out += "<li>"
                render(item, rows: rows, into: &out)
                out += "</li>"
            }
            out += "</ol>"
            return
        }
        var columns: [String] = []
        for item in items { for c in item.elements where !columns.contains(c.name.local) { columns.append(c.name.local) } }
        out += "<table class=\"list\"><tr>"
        for c in columns { out += "<th>\(escapeHTML(c))</th>" }
        out += "</tr>"
        for item in items {
            out += "<tr>"
            for c in columns {
                let values = item.elements.filter { $0.name.local == c }.map { $0.text.trimmingXMLSpace() }
                out += "<td>\(values.isEmpty ? "" : escapeHTML(values.joined(separator: ", ")))</td>"
            }
            out += "</tr>"
        }
        out += "</table>"
    }
}
