import Hummingbird

/// The library page served at `/`: one self-contained HTML file (no CDN, no external asset).
/// Everything it shows comes from the API with the same calls a script would make; text from the
/// library (file names, CivitAI names, prompts) is only ever inserted as text, never as HTML.
enum WebPage {
    static func response() -> Response {
        var response = JSONBody.bytes(Array(html.utf8), contentType: "text/html; charset=utf-8")
        response.headers[.contentSecurityPolicy] =
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
        return response
    }

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tensors</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg:#1d2330; --muted:#667085; --line:#e3e6ec; --accent:#3a5bd9; --ok:#1f8a4c; --warn:#b54708; --bad:#c0362c; --bg:#f7f8fa; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; gap:1.5em; align-items:baseline; padding:.8em 1.2em; background:#fff; border-bottom:1px solid var(--line); }
  header h1 { font-size:1.2em; margin:0; }
  header .stats { color:var(--muted); }
  nav.tabs { display:flex; gap:.3em; margin-left:auto; }
  nav.tabs button { border:1px solid var(--line); background:#fff; padding:.35em .9em; border-radius:6px; cursor:pointer; }
  nav.tabs button.active { background:var(--accent); color:#fff; border-color:var(--accent); }
  main { padding:1em 1.2em; }
  .hidden { display:none !important; }
  .library { display:grid; grid-template-columns: 240px 1fr; gap:1.2em; }
  aside h3 { font-size:.8em; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); margin:1.2em 0 .3em; }
  aside ul { list-style:none; margin:0; padding:0; max-height:14em; overflow:auto; }
  aside li button { width:100%; text-align:left; border:0; background:none; padding:.2em .4em; border-radius:4px; cursor:pointer; display:flex; justify-content:space-between; }
  aside li button:hover { background:#eef1f8; }
  aside li button.active { background:var(--accent); color:#fff; }
  input[type=search], input[type=text], input[type=password], select, textarea { font:inherit; padding:.4em .5em; border:1px solid var(--line); border-radius:6px; width:100%; background:#fff; }
  table { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); border-radius:8px; overflow:hidden; }
  th, td { text-align:left; padding:.45em .6em; border-bottom:1px solid var(--line); vertical-align:top; }
  th { font-size:.8em; color:var(--muted); font-weight:600; background:#fafbfc; }
  tr.model { cursor:pointer; }
  tr.model:hover { background:#f2f5fc; }
  td.num { text-align:right; white-space:nowrap; font-variant-numeric:tabular-nums; }
  .state { font-size:.8em; padding:.1em .5em; border-radius:9px; border:1px solid currentColor; }
  .state.present, .state.completed { color:var(--ok); } .state.remote, .state.downloading, .state.queued { color:var(--warn); }
  .state.quarantined, .state.failed, .state.cancelled, .state.unresolved { color:var(--bad); }
  .names div { word-break:break-all; }
  .muted { color:var(--muted); }
  .update { font-weight:600; }
  .panel { background:#fff; border:1px solid var(--line); border-radius:8px; padding:1em; margin-bottom:1em; }
  .detail h2 { margin:.1em 0 .4em; font-size:1.15em; word-break:break-all; }
  .detail dl { display:grid; grid-template-columns: max-content 1fr; gap:.2em 1em; margin:.5em 0; }
  .detail dt { color:var(--muted); } .detail dd { margin:0; word-break:break-all; }
  .chips span { display:inline-block; background:#eef1f8; border-radius:5px; padding:.1em .5em; margin:.15em .3em .15em 0; font-family:ui-monospace, monospace; font-size:.9em; }
  .prompt { border-top:1px solid var(--line); padding:.5em 0; white-space:pre-wrap; font-size:.92em; }
  #drop { border:2px dashed #b8c0d0; border-radius:10px; padding:1.5em; text-align:center; background:#fff; color:var(--muted); }
  #drop.over { border-color:var(--accent); background:#eef1fb; }
  .row { display:flex; gap:.8em; align-items:end; margin:.6em 0; flex-wrap:wrap; }
  .row label { flex:1; min-width:14em; }
  .row label span { display:block; font-size:.85em; color:var(--muted); }
  .keys { border:1px solid #f1d3a8; background:#fffaf2; border-radius:8px; padding:.6em .8em; }
  .keys strong { color:var(--warn); }
  button.primary { background:var(--accent); color:#fff; border:0; border-radius:6px; padding:.5em 1.2em; font:inherit; cursor:pointer; }
  button.primary:disabled { opacity:.5; cursor:default; }
  .summary { font-size:1.05em; margin:.6em 0; }
  progress { width:100%; height:.8em; }
  .error { color:var(--bad); white-space:pre-wrap; }
  #tokenbar { background:#fff4e5; border-bottom:1px solid #f1d3a8; padding:.6em 1.2em; }
</style>
</head>
<body>
<div id="tokenbar" class="hidden">
  This API needs its access token (the one set with TSR_API_TOKEN); it stays in this page's memory only.
  <div class="row"><label><input id="apitoken" type="password" autocomplete="off"></label><button class="primary" id="tokenok">Use token</button></div>
</div>
<header>
  <h1>tensors</h1>
  <span class="stats" id="stats">…</span>
  <nav class="tabs">
    <button data-tab="library" class="active">Library</button>
    <button data-tab="workflow">Workflow</button>
    <button data-tab="downloads">Downloads <span id="active-count"></span></button>
  </nav>
</header>
<main>
  <section id="tab-library">
    <div class="library">
      <aside>
        <input id="search" type="search" placeholder="Search names, CivitAI, creators…" aria-label="Search">
        <h3>State</h3>
        <select id="state" aria-label="State"><option value="">any</option><option>present</option><option>remote</option><option>quarantined</option></select>
        <h3>Folders</h3><ul id="facet-folder"></ul>
        <h3>Base models</h3><ul id="facet-base"></ul>
        <h3>Creators</h3><ul id="facet-creator"></ul>
      </aside>
      <div>
        <div id="detail" class="panel detail hidden"></div>
        <p class="muted" id="count"></p>
        <table id="models"><thead><tr><th>Name</th><th>Base model</th><th>Creator</th><th class="num">Size</th><th>State</th></tr></thead><tbody></tbody></table>
      </div>
    </div>
  </section>

  <section id="tab-workflow" class="hidden">
    <div id="drop" tabindex="0">Drop a workflow JSON here (ComfyUI workflow, API prompt or a file with workflow.dependencies), or paste it below.</div>
    <div class="row"><label><span>Workflow JSON</span><textarea id="wfjson" rows="4" spellcheck="false"></textarea></label></div>
    <div class="row">
      <label><span>Name</span><input id="wfname" type="text" value="workflow"></label>
      <button class="primary" id="check">Check</button>
    </div>
    <div id="wferror" class="error"></div>
    <div id="wfresult" class="hidden">
      <p class="summary" id="wfsummary"></p>
      <table id="wfentries"><thead><tr><th>File</th><th>Folder</th><th class="num">Size</th><th>Status</th><th>Progress</th></tr></thead><tbody></tbody></table>
      <div class="keys" style="margin-top:1em">
        <strong>Optional keys — used for this download only, never saved.</strong>
        <div class="row">
          <label><span>Hugging Face token (gated models)</span><input id="hfkey" type="password" autocomplete="off"></label>
          <label><span>CivitAI API key</span><input id="civitaikey" type="password" autocomplete="off"></label>
        </div>
      </div>
      <div class="row"><button class="primary" id="download">Download missing</button><span id="dlstatus" class="muted"></span></div>
    </div>
  </section>

  <section id="tab-downloads" class="hidden">
    <table id="downloads"><thead><tr><th>File</th><th>Workflow</th><th>State</th><th>Progress</th><th class="num">Speed</th><th></th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const state = { filter: { folder: "", base: "", creator: "", state: "", text: "" }, token: null, downloads: new Map(), workflowIds: new Set(), check: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else if (key.startsWith("on")) node.addEventListener(key.slice(2), value); else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  return node;
}
function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let v = n, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}
function stateTag(s) { return el("span", { class: "state " + s }, s); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) { askToken(); throw new Error("this API needs its access token"); }
  return response;
}
async function json(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
  return body;
}
function askToken() { document.getElementById("tokenbar").classList.remove("hidden"); }
document.getElementById("tokenok").onclick = () => {
  state.token = document.getElementById("apitoken").value.trim() || null;
  document.getElementById("tokenbar").classList.add("hidden");
  refresh(); streamEvents();
};

// Tabs
for (const button of document.querySelectorAll("nav.tabs button")) {
  button.onclick = () => showTab(button.dataset.tab);
}
function showTab(name) {
  for (const button of document.querySelectorAll("nav.tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll("main > section")) section.classList.toggle("hidden", section.id !== "tab-" + name);
}

// Library
async function refresh() {
  try {
    const stats = await json("/stats");
    document.getElementById("stats").textContent =
      `${stats.blobs} models here` + (stats.remote_blobs ? `, ${stats.remote_blobs} not downloaded` : "") +
      ` · ${bytes(stats.bytes_stored)} stored · ${bytes(stats.bytes_saved)} saved by storing duplicates once`;
  } catch (error) { document.getElementById("stats").textContent = error.message; }
  await loadModels();
}
async function loadModels() {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(state.filter)) if (value) query.set(key, value);
  query.set("limit", "1000");
  let list;
  try { list = await json("/models?" + query); } catch (error) { document.getElementById("count").textContent = error.message; return; }
  renderFacet("facet-folder", list.facets.folders, "folder");
  renderFacet("facet-base", list.facets.base_models, "base");
  renderFacet("facet-creator", list.facets.creators, "creator");
  document.getElementById("count").textContent = list.total === 1 ? "1 model" : `${list.total} models` + (list.total > list.models.length ? ` (first ${list.models.length})` : "");
  const body = document.querySelector("#models tbody");
  body.replaceChildren(...list.models.map(model => el("tr", { class: "model", "data-sha256": model.sha256, onclick: () => showModel(model.sha256) },
    el("td", { class: "names" }, ...(model.names.length ? model.names.map(n => el("div", {}, n.folder + "/" + n.path)) : [el("div", { class: "muted" }, model.sha256.slice(0, 16) + "… (no name)")]),
      model.civitai_name ? el("div", { class: "muted" }, model.civitai_name) : null),
    el("td", {}, model.base_model), el("td", {}, model.creator || "unknown"),
    el("td", { class: "num" }, bytes(model.size)), el("td", {}, stateTag(model.state)))));
}
function renderFacet(id, counts, key) {
  const entries = Object.entries(counts).sort((a, b) => a[0].localeCompare(b[0]));
  const all = el("li", {}, el("button", { class: state.filter[key] ? "" : "active", onclick: () => setFilter(key, "") }, el("span", {}, "all")));
  document.getElementById(id).replaceChildren(all, ...entries.map(([name, count]) => el("li", {},
    el("button", { class: state.filter[key] === name ? "active" : "", "data-value": name, onclick: () => setFilter(key, name) }, el("span", {}, name), el("span", { class: "muted" }, count)))));
}
function setFilter(key, value) { state.filter[key] = value; loadModels(); }
let searchTimer = null;
document.getElementById("search").oninput = event => { clearTimeout(searchTimer); searchTimer = setTimeout(() => setFilter("text", event.target.value.trim()), 150); };
document.getElementById("state").onchange = event => setFilter("state", event.target.value);

async function showModel(sha256) {
  const panel = document.getElementById("detail");
  let model;
  try { model = await json("/models/" + sha256); } catch (error) { panel.replaceChildren(el("p", { class: "error" }, error.message)); panel.classList.remove("hidden"); return; }
  const title = model.civitai ? model.civitai.model_name + " — " + model.civitai.version_name : (model.names[0] ? model.names[0].path : model.sha256);
  const facts = el("dl", {},
    el("dt", {}, "Names"), el("dd", {}, ...model.names.map(n => el("div", {}, n.folder + "/" + n.path))),
    el("dt", {}, "Size"), el("dd", {}, bytes(model.size) + ` (${model.size} bytes)`),
    el("dt", {}, "State"), el("dd", {}, stateTag(model.state)),
    el("dt", {}, "Base model"), el("dd", {}, model.base_model),
    el("dt", {}, "SHA-256"), el("dd", {}, model.sha256),
    model.tensor_count !== null && model.tensor_count !== undefined ? el("dt", {}, "Tensors") : null,
    model.tensor_count !== null && model.tensor_count !== undefined ? el("dd", {}, model.tensor_count) : null,
    model.civitai ? el("dt", {}, "CivitAI") : null,
    model.civitai ? el("dd", {}, `${model.civitai.type} by ${model.civitai.creator || "unknown"} (model ${model.civitai.model_id}, version ${model.civitai.version_id})`) : null,
    model.civitai && model.civitai.update_available ? el("dt", {}, "Update") : null,
    model.civitai && model.civitai.update_available ? el("dd", { class: "update", id: "update-available" }, `update available: ${model.civitai.newest_version_name} (version ${model.civitai.newest_version_id}); tsr update fetches it`) : null,
    model.sources.length ? el("dt", {}, "Sources") : null,
    model.sources.length ? el("dd", {}, ...model.sources.map(s => el("div", {}, s.url))) : null);
  const parts = [el("button", { style: "float:right", onclick: () => panel.classList.add("hidden") }, "close"), el("h2", {}, title), facts];
  if (model.trigger_words.length) parts.push(el("h3", {}, "Trigger words"), el("div", { class: "chips", id: "triggers" }, ...model.trigger_words.map(w => el("span", {}, w))));
  if (model.example_prompts.length) parts.push(el("h3", {}, "Example prompts"), ...model.example_prompts.slice(0, 5).map(p =>
    el("div", { class: "prompt" }, p.params.prompt || "", p.params.negativePrompt ? el("div", { class: "muted" }, "Negative: " + p.params.negativePrompt) : null,
      el("div", { class: "muted" }, Object.entries(p.params).filter(([k]) => k !== "prompt" && k !== "negativePrompt").map(([k, v]) => k + ": " + v).join(" · ")))));
  const metadata = Object.entries(model.metadata);
  if (metadata.length) parts.push(el("h3", {}, "Header metadata"), el("dl", { id: "metadata" }, ...metadata.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v.length > 400 ? v.slice(0, 400) + "…" : v)])));
  panel.replaceChildren(...parts);
  panel.classList.remove("hidden");
  panel.scrollIntoView({ block: "nearest" });
}

// Workflow: drop or paste, check, download
const drop = document.getElementById("drop");
drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async event => {
  event.preventDefault(); drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (!file) return;
  document.getElementById("wfjson").value = await file.text();
  document.getElementById("wfname").value = file.name.replace(/\.json$/i, "").replace(/[\/\\]/g, "_") || "workflow";
  checkWorkflow();
});
document.getElementById("check").onclick = () => checkWorkflow();
document.getElementById("download").onclick = () => downloadWorkflow();

async function checkWorkflow() {
  const error = document.getElementById("wferror");
  error.textContent = "";
  document.getElementById("wfresult").classList.add("hidden");
  try {
    state.check = await json("/workflows/check?resolve=true",
      { method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, keyHeaders()), body: document.getElementById("wfjson").value });
  } catch (e) { error.textContent = e.message; return; }
  renderCheck();
}
function renderCheck() {
  const check = state.check;
  document.getElementById("wfsummary").textContent =
    `${check.existing.length} here, ${check.missing.length} missing · ${bytes(check.total_download_size)} to download · ${bytes(check.total_saved_size)} already here`;
  const rows = [...check.missing, ...check.existing].map(entry => el("tr", { "data-file": entry.folder + "/" + entry.filename },
    el("td", {}, entry.filename, entry.note ? el("div", { class: "muted" }, entry.note) : null),
    el("td", {}, entry.folder), el("td", { class: "num" }, bytes(entry.size)),
    el("td", { class: "status" }, stateTag(entry.state === "present" ? "present" : entry.state)),
    el("td", { class: "progress" })));
  document.querySelector("#wfentries tbody").replaceChildren(...rows);
  for (const p of check.problems) rows.push(document.querySelector("#wfentries tbody").appendChild(el("tr", {}, el("td", { colspan: "5", class: "error" }, p.entry + ": " + p.message))));
  document.getElementById("download").disabled = check.missing.length === 0;
  document.getElementById("wfresult").classList.remove("hidden");
}
function keyHeaders() {
  const headers = {};
  const hf = document.getElementById("hfkey").value.trim(), civitai = document.getElementById("civitaikey").value.trim();
  if (hf) headers["X-Huggingface-Token"] = hf;
  if (civitai) headers["X-Civitai-Api-Key"] = civitai;
  return headers;
}
async function downloadWorkflow() {
  const name = document.getElementById("wfname").value.trim() || "workflow";
  const status = document.getElementById("dlstatus");
  const error = document.getElementById("wferror");
  error.textContent = "";
  document.getElementById("download").disabled = true;
  const keys = {};
  const hf = document.getElementById("hfkey").value.trim(), civitai = document.getElementById("civitaikey").value.trim();
  if (hf) keys.huggingface_token = hf;
  if (civitai) keys.civitai_api_key = civitai;
  try {
    status.textContent = "Asking the sources…";
    const extra = keyHeaders();
    await json("/workflows?name=" + encodeURIComponent(name) + "&replace=true",
      { method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, extra), body: document.getElementById("wfjson").value });
    const started = await json("/workflows/" + encodeURIComponent(name) + "/pull", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(keys) });
    for (const d of started.downloads) { state.workflowIds.add(d.id); updateDownload(d); }
    status.textContent = started.downloads.length ? `Downloading ${started.downloads.length} file(s)…` : "Nothing to download.";
    if (started.unresolved.length) error.textContent = "Not downloadable: " + started.unresolved.join("; ");
  } catch (e) { error.textContent = e.message; status.textContent = ""; document.getElementById("download").disabled = false; }
  finally { document.getElementById("hfkey").value = ""; document.getElementById("civitaikey").value = ""; }
}

// Downloads: the live event stream (read with fetch so the token header can go with it)
function progressCell(d) {
  const cell = el("div", {});
  if (d.total_bytes) cell.append(el("progress", { max: String(d.total_bytes), value: String(d.bytes) }));
  cell.append(el("div", { class: "muted" }, bytes(d.bytes) + (d.total_bytes ? " / " + bytes(d.total_bytes) : "")));
  if (d.error) cell.append(el("div", { class: "error" }, d.error));
  return cell;
}
function updateDownload(d) {
  state.downloads.set(d.id, d);
  renderDownloads();
  if (state.workflowIds.has(d.id)) {
    const row = document.querySelector(`#wfentries tr[data-file="${CSS.escape(d.file)}"]`);
    if (row) {
      row.querySelector(".status").replaceChildren(stateTag(d.state));
      row.querySelector(".progress").replaceChildren(progressCell(d));
    }
    const mine = [...state.workflowIds].map(id => state.downloads.get(id)).filter(Boolean);
    if (mine.length && mine.every(x => ["completed", "failed", "cancelled"].includes(x.state))) {
      const failed = mine.filter(x => x.state !== "completed").length;
      document.getElementById("dlstatus").textContent = failed ? `${failed} of ${mine.length} failed` : `All ${mine.length} downloaded.`;
    }
  }
  if (["completed", "failed", "cancelled"].includes(d.state)) scheduleRefresh();
}
let refreshTimer = null;
function scheduleRefresh() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 300); }
function renderDownloads() {
  const list = [...state.downloads.values()].sort((a, b) => b.id - a.id);
  const active = list.filter(d => d.state === "queued" || d.state === "downloading").length;
  document.getElementById("active-count").textContent = active ? `(${active})` : "";
  document.querySelector("#downloads tbody").replaceChildren(...list.map(d => el("tr", { "data-id": String(d.id) },
    el("td", {}, d.file), el("td", {}, d.workflow || ""), el("td", {}, stateTag(d.state)), el("td", {}, progressCell(d)),
    el("td", { class: "num" }, d.state === "downloading" ? bytes(d.speed) + "/s" : ""),
    el("td", {}, d.state === "downloading" || d.state === "queued" ? el("button", { onclick: () => api("/downloads/" + d.id, { method: "DELETE" }) }, "cancel") : ""))));
}
let streaming = false;
async function streamEvents() {
  if (streaming) return;
  streaming = true;
  try {
    const response = await api("/downloads/events");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter(line => line.startsWith("data: ")).map(line => line.slice(6)).join("\n");
        if (data) updateDownload(JSON.parse(data));
      }
    }
  } catch (error) { /* reconnect below */ }
  streaming = false;
  setTimeout(streamEvents, 2000);
}
refresh();
streamEvents();
</script>
</body>
</html>
"""#
}
