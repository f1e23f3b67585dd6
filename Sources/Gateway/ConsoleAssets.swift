import Infoset
import ServiceKernel

/// The console's page shell, style and script, compiled into the binary: the appliance is
/// offline, so nothing is fetched from elsewhere and there is no build step.
enum ConsoleAssets {
    static func page(title: String, node: String, body: String) -> Gateway.Response {
        let html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
        <title>decos · \(escapeHTML(title))</title><style>\(style)</style></head>
        <body data-node="\(escapeHTML(node))"><header><h1><a href="/">decos</a></h1><span>\(escapeHTML(title))</span>
        <span id="live" class="live off" title="live updates">static</span>
        <label class="token">operator token <input type="password" id="token" autocomplete="off"></label></header>
        <main>
        \(body)
        </main><script>\(script)</script></body></html>

        """
        return Gateway.Response(status: .ok, contentType: "text/html; charset=utf-8", body: Array(html.utf8))
    }

    /// For pages read without JavaScript; the script hides it and sends the header's token.
    static let tokenInput = "<input class=\"tok\" type=\"password\" name=\"token\" placeholder=\"token\" autocomplete=\"off\">"

    /// A button that posts one verb with a fixed body (power, process control).
    static func actionForm(action: String, verb: String, body: String, label: String, kind: String) -> String {
        "<form class=\"action \(kind)\" method=\"post\" action=\"\(escapeHTML(action))\"><input type=\"hidden\" name=\"verb\" value=\"\(verb)\">"
            + "<input type=\"hidden\" name=\"body\" value=\"\(escapeHTML(body))\">\(tokenInput)<button>\(escapeHTML(label))</button></form>"
    }

    /// An example body for a verb: its element with every field empty, one item of each list.
    static func skeleton(_ body: ServiceOperation.Body) -> String {
        guard case .element(let name, let shape) = body else { return "" }
        func element(_ name: String, _ shape: InfosetSchema) -> Element {
            guard case .sequence(let fields) = shape else { return Element(name) }
            return Element(name, children: fields.map { .element(element($0.name, $0.schema)) })
        }
        return XMLWriter.pretty(element(name, shape)).trimmingXMLSpace()
    }

    static let style = """
    body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
    header{display:flex;gap:1em;align-items:baseline;flex-wrap:wrap;padding:.6em 1.5em;background:#1d2330;color:#e8ebf0}
    header h1{font-size:18px;margin:0}header a{color:#fff;text-decoration:none}
    main{padding:1em 1.5em;max-width:1200px}
    .token{margin-left:auto;font-size:12px}.token input{width:12em}
    .live{font-size:12px;padding:0 .5em;border-radius:3px;background:#555}.live.on{background:#2a7d46}
    section.node{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:.5em 1em;margin:1em 0}
    h2{font-size:16px;margin:.3em 0}
    table{border-collapse:collapse;margin:.2em 0}td,th{padding:.15em .7em;text-align:left;vertical-align:top;border-bottom:1px solid #e6e9ee}
    th{font-weight:600;color:#4b5568}table.record th{width:1%;white-space:nowrap}
    code{font-size:12px;color:#4b5568}
    .status{font-size:12px;padding:0 .45em;border-radius:3px;background:#ccc}
    .status.alive{background:#cdebd7}.status.suspect{background:#fbe3b0}.status.dead,.status.left{background:#f4c7c3}
    details{margin:.35em 0}summary{cursor:pointer}details.svc{border-left:3px solid #c9d3e0;padding-left:.7em}
    .state{margin:.3em 0}.none,.note{color:#8a93a3}.fault{color:#a3261b}
    form{margin:.3em 0}form.send{display:flex;gap:.4em;align-items:flex-start;flex-wrap:wrap}
    details.send>summary{font-size:12px;color:#4b5568}
    textarea{font:12px monospace;min-width:24em;flex:1}
    form.action{display:inline-block;margin:0 .3em 0 0}.power{float:right}
    .process-actions{margin:.2em 0}.process-actions code{margin-right:.5em}
    output.result div{margin:.3em 0;padding:.3em .6em;border-radius:4px;background:#eef6f0}output.result div.fault{background:#fbeceb}
    pre{font-size:12px;white-space:pre-wrap;margin:.2em 0}
    .changed{animation:flash 1s}@keyframes flash{from{background:#fff3bf}to{background:transparent}}
    """

    /// Live updates over one streamed response, forms sent in place, the token kept for the tab.
    static let script = #"""
    "use strict";
    const tokenField = document.getElementById("token");
    tokenField.value = sessionStorage.getItem("decos-token") || "";
    tokenField.addEventListener("change", () => sessionStorage.setItem("decos-token", tokenField.value));
    const auth = () => tokenField.value ? {Authorization: "Bearer " + tokenField.value} : {};
    document.querySelectorAll("input.tok").forEach(i => i.hidden = true);

    // One block per path: fetch its fragment again when the stream says it changed; changes
    // that arrive while a fetch is under way make one more fetch, not one each.
    const busy = new Map();
    async function refresh(path) {
      if (busy.has(path)) { busy.set(path, true); return; }
      busy.set(path, false);
      try {
        for (const el of document.querySelectorAll('[data-path="' + CSS.escape(path) + '"]')) {
          const url = el.dataset.fragment || path + "?fragment";
          const r = await fetch(url, {headers: auth()});
          const target = el.dataset.fragment ? el : el.querySelector(".state");
          swapIn(target, await r.text());
          target.classList.remove("changed"); void target.offsetWidth; target.classList.add("changed");
        }
      } finally {
        const again = busy.get(path);
        busy.delete(path);
        if (again) refresh(path);
      }
    }
    function hideTokens(root) { root.querySelectorAll("input.tok").forEach(i => i.hidden = true); }
    // A process's block is fetched again at each line it writes: its buttons that did not change
    // stay the same elements, so one under the pointer is not replaced before the click lands.
    function swapIn(target, html) {
      const next = document.createElement("template");
      next.innerHTML = html;
      hideTokens(next.content);
      const kept = target.querySelectorAll(".process-actions");
      next.content.querySelectorAll(".process-actions").forEach((n, i) => {
        if (kept[i] && kept[i].outerHTML === n.outerHTML) n.replaceWith(kept[i]);
      });
      target.replaceChildren(next.content);
      target.dataset.fetched = (+target.dataset.fetched || 0) + 1;
    }

    let reloadTimer = 0;
    function onEvent(text) {
      let kind = "message", data = "";
      for (const line of text.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (kind !== "change") return;
      const path = data.split(" ")[0];
      // A service came or went, or a node joined: the page itself changed.
      if (path.endsWith("/directory")) { clearTimeout(reloadTimer); reloadTimer = setTimeout(() => location.reload(), 300); return; }
      refresh(path);
    }

    const live = document.getElementById("live");
    async function follow() {
      const paths = [...new Set([...document.querySelectorAll("[data-path]")].map(e => e.dataset.path))];
      paths.push("/@" + document.body.dataset.node + "/directory");
      const url = "/?events&" + paths.map(p => "path=" + encodeURIComponent(p)).join("&");
      for (;;) {
        try {
          const r = await fetch(url, {headers: auth()});
          if (!r.ok) throw new Error(r.status);
          live.textContent = "live"; live.className = "live on";
          const reader = r.body.getReader(), decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, {stream: true});
            let end;
            while ((end = buffer.indexOf("\n\n")) >= 0) { onEvent(buffer.slice(0, end)); buffer = buffer.slice(end + 2); }
          }
        } catch (e) {}
        live.textContent = "reconnecting"; live.className = "live off";
        await new Promise(r => setTimeout(r, 2000));
      }
    }
    follow();

    // Forms: sent in place, the reply or fault shown under them, the state block refreshed.
    document.addEventListener("change", e => {
      if (e.target.name === "verb" && e.target.form.classList.contains("send")) {
        e.target.form.body.value = e.target.selectedOptions[0].dataset.body || "";
      }
    });
    document.addEventListener("submit", async e => {
      const form = e.target;
      e.preventDefault();
      if (form.classList.contains("power") && !confirm(form.querySelector("button").textContent + " this node?")) return;
      form.token.value = tokenField.value;
      const r = await fetch(form.action + "&fragment", {method: "POST", headers: auth(), body: new URLSearchParams(new FormData(form))});
      const html = await r.text();
      const out = form.nextElementSibling && form.nextElementSibling.matches("output.result") ? form.nextElementSibling : null;
      if (out) out.innerHTML = html;
      else if (!r.ok) alert(html.replace(/<[^>]+>/g, " "));
    });
    """#
}
