// Coldmod web UI: hand-written, no dependencies, no build step.
// Every string from the network (keys, paths, app names, messages, diffs) is
// put into the page with textContent or as an attribute value, never as HTML.
"use strict";

const MAX_ROWS = 2000;        // rows drawn at once; filters narrow the rest down
const HOT_FROM = 2 / 3;       // share of the log scale from which a function is hot
const REFETCH_GAP_MS = 500;   // live updates: at most two heatmap fetches a second

const $ = (id) => document.getElementById(id);

const state = {
  apps: [],
  app: null,
  heatmap: null,             // {entries, now_ms, ...}
  clockSkew: 0,              // server time minus ours
  filter: "all",
  text: "",
  sort: { col: "calls", asc: true },
  selected: null,
  previousCalls: new Map(),  // key -> calls before the last refresh (to flash changed cells)
  connectKey: null,
  cli: null,                 // {connected, seen, app, root, hostname}
  local: null,               // Map key -> {key, path, line, ignored}
  refs: new Map(),           // key -> {references, safe}
  appChosen: false,
  gridDirty: true,
};

// ------------------------------------------------------------------ helpers

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function compact(n) {
  if (n < 1000) return String(n);
  const units = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]];
  for (const [unit, size] of units) {
    if (n >= size) {
      const v = n / size;
      return (v < 10 ? v.toFixed(1).replace(/\.0$/, "") : Math.round(v).toString()) + unit;
    }
  }
  return String(n);
}

function callsText(entry) {
  if (entry.calls === null) return "—";
  return (entry.estimated ? "~" : "") + compact(entry.calls);
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() + state.clockSkew - ms) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400 * 2) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function iso(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
}

let toastTimer = null;
function toast(message, bad) {
  const node = $("toast");
  node.textContent = message;
  node.className = bad ? "toast bad" : "toast";
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, bad ? 8000 : 4000);
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// ------------------------------------------------------------ the URL hash

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { connect: params.get("connect"), app: params.get("app") };
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.connectKey) params.set("connect", state.connectKey);
  if (state.app) params.set("app", state.app);
  history.replaceState(null, "", "#" + params.toString());
}

// ------------------------------------------------------------------- model

function classify(entry, max) {
  if (entry.calls === null) return "ignored";
  if (entry.calls === 0) return "cold";
  const t = Math.log10(entry.calls + 1) / Math.log10(max + 1);
  return t >= HOT_FROM ? "hot" : "warm";
}

function heat(calls, max) {
  // Pale yellow (one call) to deep red (the most called), on a log scale.
  const t = max > 1 ? Math.log10(calls) / Math.log10(max) : 1;
  const hue = 50 - 50 * t;
  const light = 80 - 38 * t;
  return `hsl(${hue.toFixed(0)}, ${(95 - 20 * t).toFixed(0)}%, ${light.toFixed(0)}%)`;
}

function isIgnored(key) {
  const local = state.local && state.local.get(key);
  return Boolean(local && local.ignored);
}

function rows() {
  const entries = state.heatmap ? state.heatmap.entries : [];
  const max = entries.reduce((m, e) => Math.max(m, e.calls), 0);
  const out = entries.map((e) => ({ ...e, state: classify(e, max), ignored: isIgnored(e.key) }));
  if (state.local) {
    // Ignored keys are not traced, so the heatmap lacks them: list them from the checkout.
    const known = new Set(entries.map((e) => e.key));
    for (const source of state.local.values()) {
      if (source.ignored && !known.has(source.key)) {
        out.push({ key: source.key, calls: null, estimated: false, last_seen_ms: 0, tracked_since_ms: 0,
          path: source.path, line: source.line, state: "ignored", ignored: true });
      }
    }
  }
  return { all: out, max };
}

function matches(row) {
  if (state.filter === "ignored") { if (!row.ignored) return false; }
  else if (row.calls === null) return false;
  else if (state.filter !== "all" && row.state !== state.filter) return false;
  if (state.text) {
    const text = state.text.toLowerCase();
    if (!row.key.toLowerCase().includes(text) && !(row.path || "").toLowerCase().includes(text)) return false;
  }
  return true;
}

const SORTS = {
  state: (r) => (r.calls === null ? -1 : r.calls),
  key: (r) => r.key,
  calls: (r) => (r.calls === null ? -1 : r.calls),
  last: (r) => r.last_seen_ms,
  since: (r) => r.tracked_since_ms,
  where: (r) => `${r.path}\u0000${String(r.line).padStart(8, "0")}`,
  refs: (r) => { const ref = state.refs.get(r.key); return ref ? ref.references : -1; },
};

function sorted(list) {
  const key = SORTS[state.sort.col] || SORTS.calls;
  const sign = state.sort.asc ? 1 : -1;
  return list.slice().sort((a, b) => {
    const x = key(a), y = key(b);
    if (x < y) return -sign;
    if (x > y) return sign;
    return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
  });
}

// ------------------------------------------------------------------ render

function renderApps() {
  const select = $("app");
  select.replaceChildren(...state.apps.map((a) =>
    el("option", { value: a.app, text: `${a.app} (${a.keys} functions, ${a.cold_keys} cold)` })));
  if (state.app) select.value = state.app;
}

function renderSummary(all, max) {
  const traced = all.filter((r) => r.calls !== null);
  const counts = { cold: 0, warm: 0, hot: 0 };
  let calls = 0;
  for (const r of traced) { counts[r.state] += 1; calls += r.calls; }
  const ignored = all.filter((r) => r.ignored).length;
  const boxes = [
    ["functions", traced.length, ""],
    ["cold", counts.cold, "cold"],
    ["warm", counts.warm, "warm"],
    ["hot", counts.hot, "hot"],
    ["calls", compact(calls), ""],
  ];
  if (state.local) boxes.push(["ignored", ignored, ""]);
  const h = state.heatmap;
  if (h && (h.dropped_unknown || h.dropped_updates)) boxes.push(["dropped updates", compact(h.dropped_unknown + h.dropped_updates), ""]);
  $("summary").replaceChildren(...boxes.map(([label, value, cls]) =>
    el("div", { class: `count ${cls}`, "data-count": label }, el("b", { text: String(value) }), el("span", { text: label }))));
  $("legend-max").textContent = max ? `(max ${compact(max)})` : "";
}

function renderGrid(all, max) {
  const files = new Map();
  for (const r of all) {
    if (r.calls === null) continue;
    const path = r.path || "(unknown file)";
    if (!files.has(path)) files.set(path, []);
    files.get(path).push(r);
  }
  const boxes = [];
  for (const path of [...files.keys()].sort()) {
    const list = files.get(path).sort((a, b) => a.line - b.line || (a.key < b.key ? -1 : 1));
    const columns = Math.max(4, Math.ceil(Math.sqrt(list.length * 2)));
    const cells = el("div", { class: "cells" });
    cells.style.width = `${columns * 23}px`;
    for (const r of list) {
      const local = state.local && !state.local.has(r.key);
      const cell = el("div", {
        class: "cell" + (r.calls === 0 ? " cold" : "") + (local ? " gone" : "") + (r.key === state.selected ? " selected" : ""),
        title: `${r.key}\n${callsText(r)} calls, last ${ago(r.last_seen_ms)}`,
        "data-key": r.key,
        role: "button",
      });
      if (r.calls > 0) cell.style.backgroundColor = heat(r.calls, max);
      const before = state.previousCalls.get(r.key);
      if (before !== undefined && before !== r.calls) cell.classList.add("bumped");
      cells.append(cell);
    }
    const cold = list.filter((r) => r.calls === 0).length;
    boxes.push(el("div", { class: "file" + (cold ? " has-cold" : ""), "data-path": path },
      el("div", { class: "file-name", title: `${path}: ${cold} of ${list.length} cold`, text: path }),
      cells));
  }
  $("grid").replaceChildren(...boxes);
}

function actions(r) {
  const local = state.local && state.local.get(r.key);
  const live = Boolean(state.cli && state.cli.connected);
  const cell = el("td", { class: "actions connect-only" });
  if (!local || local.ignored) return cell;   // only functions of the checkout can be acted on
  cell.append(
    el("button", { type: "button", disabled: !live, "data-action": "ignore", onclick: () => ignore(r.key), text: "Ignore" }),
    el("button", { type: "button", disabled: !live, "data-action": "remove", onclick: () => planRemoval(r.key), text: "Remove" }),
    el("button", { type: "button", disabled: !live, "data-action": "open", onclick: () => openEditor(r.key), text: "Open" }),
  );
  return cell;
}

function renderTable(all) {
  const shown = sorted(all.filter(matches));
  const body = el("tbody");
  for (const r of shown.slice(0, MAX_ROWS)) {
    const keyCell = el("td", { class: "key", text: r.key });
    if (r.ignored) keyCell.append(el("span", { class: "tag ignored", text: "ignored" }));
    if (state.local && !state.local.has(r.key)) keyCell.append(el("span", { class: "tag", text: "not in checkout" }));
    const ref = state.refs.get(r.key);
    const refsCell = el("td", { class: "num connect-only" });
    if (ref) {
      refsCell.textContent = String(ref.references);
      refsCell.title = ref.safe ? "safe to remove" : "still referenced: unsafe to remove";
    } else if (state.local && state.local.has(r.key) && !r.ignored) {
      refsCell.textContent = "…";
    }
    const where = r.path ? `${r.path}:${r.line}` : "";
    body.append(el("tr", { "data-key": r.key, class: r.key === state.selected ? "selected" : "" },
      el("td", {}, el("span", { class: `state ${r.state}`, text: r.state })),
      keyCell,
      el("td", { class: "num" + (r.estimated ? " est" : ""), title: r.calls === null ? "" : `${r.calls}${r.estimated ? " (estimated)" : ""}`, text: callsText(r) }),
      el("td", { title: iso(r.last_seen_ms), text: ago(r.last_seen_ms) }),
      el("td", { title: iso(r.tracked_since_ms), text: r.tracked_since_ms ? ago(r.tracked_since_ms) : "" }),
      el("td", { class: "where", text: where }),
      refsCell,
      actions(r)));
  }
  $("rows").replaceChild(body, $("rows").tBodies[0]);
  $("shown").textContent = shown.length > MAX_ROWS
    ? `showing ${MAX_ROWS} of ${shown.length}; filter to see the rest`
    : `${shown.length} shown`;
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort.col);
    th.classList.toggle("asc", th.dataset.sort === state.sort.col && state.sort.asc);
  }
}

function renderConnect() {
  const paired = Boolean(state.connectKey);
  document.body.classList.toggle("paired", paired);
  $("connect").hidden = !paired;
  $("connect-new").hidden = paired;
  const badge = $("connect-state");
  const where = $("connect-where");
  const cli = state.cli;
  if (!paired) return;
  if (cli && cli.connected) {
    badge.textContent = "CLI connected";
    badge.className = "badge connected";
    where.textContent = `${cli.hostname}:${cli.root}`;
    where.title = `app ${cli.app}`;
    $("pairing").hidden = true;
  } else if (cli && cli.seen) {
    badge.textContent = "CLI disconnected";
    badge.className = "badge disconnected";
    where.textContent = `${cli.hostname}:${cli.root} (waiting for it to reconnect)`;
  } else {
    badge.textContent = "waiting for the CLI";
    badge.className = "badge waiting";
    where.textContent = "";
    $("pairing").hidden = false;
    $("pairing-command").textContent = `coldmod connect '${location.origin}/#connect=${state.connectKey}'`;
  }
}

let frame = 0;
function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const { all, max } = rows();
    $("empty").hidden = state.apps.length > 0;
    if (!state.apps.length) {
      $("empty").textContent = "No heatmaps yet: run your application under coldmod-trace with COLDMOD_GRPC_HOST pointing at this collector.";
    }
    renderSummary(all, max);
    if (state.gridDirty) {   // the picture only changes with the data, not with filters or sorting
      state.gridDirty = false;
      renderGrid(all, max);
      state.previousCalls = new Map(all.filter((r) => r.calls !== null).map((r) => [r.key, r.calls]));
    }
    renderTable(all);
    renderConnect();
  });
}

function select(key) {
  state.selected = state.selected === key ? null : key;
  for (const cell of document.querySelectorAll("#grid .cell.selected")) cell.classList.remove("selected");
  if (state.selected) {
    const cell = document.querySelector(`#grid .cell[data-key="${CSS.escape(key)}"]`);
    if (cell) cell.classList.add("selected");
  }
  render();
  requestAnimationFrame(() => {
    const row = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
    if (row) row.scrollIntoView({ block: "center", behavior: "smooth" });
  });
}

// ------------------------------------------------------------------- data

async function loadApps() {
  state.apps = await getJSON("/api/apps");
  const names = state.apps.map((a) => a.app);
  if (!state.app || !names.includes(state.app)) {
    const wanted = readHash().app;
    state.app = names.includes(wanted) ? wanted : (state.cli && names.includes(state.cli.app) ? state.cli.app : names[0] || null);
  }
  renderApps();
}

let loading = null;
let again = false;
let lastFetch = 0;
async function loadHeatmap() {
  // One fetch at a time; changes during it cause exactly one more.
  if (loading) { again = true; return loading; }
  loading = (async () => {
    do {
      again = false;
      if (!state.app) { state.heatmap = null; break; }
      // A busy collector commits many times a second: refetch at most twice a second.
      const wait = lastFetch + REFETCH_GAP_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      lastFetch = Date.now();
      try {
        const data = await getJSON(`/api/heatmap?app=${encodeURIComponent(state.app)}`);
        if (data.app === state.app) {
          state.heatmap = data;
          state.gridDirty = true;
          state.clockSkew = data.now_ms - Date.now();
        }
      } catch (error) {
        toast(`Cannot load the heatmap: ${error.message}`, true);
      }
    } while (again);
    render();
    document.body.dataset.loaded = state.app || "";
    loading = null;
  })();
  return loading;
}

// -------------------------------------------------------------------- live

let source = null;
function listen() {
  if (source) source.close();
  const url = state.connectKey ? `/api/events/${encodeURIComponent(state.connectKey)}` : "/api/events";
  source = new EventSource(url);
  const live = $("live");
  source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  source.addEventListener("heatmap", (event) => {
    const { app } = JSON.parse(event.data);
    if (!state.apps.some((a) => a.app === app)) { loadApps().then(loadHeatmap); return; }
    if (app === state.app) loadHeatmap();
  });
  source.addEventListener("reload", () => { loadApps().then(loadHeatmap); });
  source.addEventListener("cli", (event) => {
    const before = state.cli;
    state.cli = JSON.parse(event.data);
    if (!state.appChosen && state.cli.app && state.apps.some((a) => a.app === state.cli.app) && state.app !== state.cli.app) {
      state.app = state.cli.app;
      renderApps();
      writeHash();
      loadHeatmap();
    }
    if (before && before.connected && !state.cli.connected) toast("The CLI disconnected; it reconnects by itself when restarted.", true);
    render();
  });
  source.addEventListener("sources", (event) => {
    const list = JSON.parse(event.data);
    state.local = state.cli && state.cli.seen ? new Map(list.map((s) => [s.key, s])) : null;
    state.gridDirty = true;
    render();
  });
  source.addEventListener("references", (event) => {
    for (const ref of JSON.parse(event.data)) state.refs.set(ref.key, ref);
    render();
  });
}

// ----------------------------------------------------------------- connect

async function command(kind, key) {
  const response = await fetch(`/api/connect/${encodeURIComponent(state.connectKey)}/commands`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Coldmod": "1" },
    body: JSON.stringify({ command: kind, key }),
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

async function ignore(key) {
  try {
    const result = await command("ignore", key);
    toast(result.message, !result.ok);
  } catch (error) { toast(error.message, true); }
}

async function openEditor(key) {
  try {
    const result = await command("open", key);
    toast(result.message, !result.ok);
  } catch (error) { toast(error.message, true); }
}

async function planRemoval(key) {
  toast(`Planning the removal of ${key}…`);
  let plan;
  try { plan = await command("plan_removal", key); } catch (error) { toast(error.message, true); return; }
  if (!plan.ok) { toast(plan.message, true); return; }
  $("toast").hidden = true;
  $("dialog-title").textContent = `Remove ${key}`;
  const verdict = $("dialog-verdict");
  verdict.textContent = plan.safe ? `Safe to remove. ${plan.message}` : `Unsafe: ${plan.message}`;
  verdict.className = plan.safe ? "safe" : "unsafe";
  $("dialog-reasons").replaceChildren(...plan.reasons.map((reason) => el("li", { text: reason })));
  $("dialog-diff").replaceChildren(...plan.diff.split(/(?<=\n)/).filter(Boolean).map((line) => el("span", {
    class: line.startsWith("+++") || line.startsWith("---") ? "diff-file" : line.startsWith("@@") ? "hunk"
      : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "",
    text: line,
  })));
  const apply = $("dialog-apply");
  apply.hidden = !plan.safe;
  apply.disabled = false;
  apply.onclick = async () => {
    apply.disabled = true;
    try {
      const result = await command("apply_removal", key);
      toast(result.message, !result.ok);
      if (result.ok) $("dialog").hidden = true;
    } catch (error) { toast(error.message, true); }
    apply.disabled = false;
  };
  $("dialog").hidden = false;
}

function newConnectKey() {
  const bytes = new Uint8Array(24);   // 192 bits
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// -------------------------------------------------------------------- boot

function wire() {
  $("app").addEventListener("change", (event) => {
    state.app = event.target.value;
    state.appChosen = true;
    state.previousCalls = new Map();
    writeHash();
    loadHeatmap();
  });
  for (const button of document.querySelectorAll("[data-filter]")) {
    button.addEventListener("click", () => {
      state.filter = button.dataset.filter;
      for (const b of document.querySelectorAll("[data-filter]")) b.classList.toggle("on", b === button);
      render();
    });
  }
  $("search").addEventListener("input", (event) => { state.text = event.target.value.trim(); render(); });
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const col = th.dataset.sort;
      state.sort = state.sort.col === col ? { col, asc: !state.sort.asc } : { col, asc: col !== "last" && col !== "refs" };
      render();
    });
  }
  $("grid").addEventListener("click", (event) => {
    const cell = event.target.closest(".cell");
    if (cell) select(cell.dataset.key);
  });
  $("dialog-cancel").addEventListener("click", () => { $("dialog").hidden = true; });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") $("dialog").hidden = true; });
  $("connect-new").addEventListener("click", () => {
    state.connectKey = newConnectKey();
    state.cli = null;
    writeHash();
    listen();
    render();
  });
  window.addEventListener("hashchange", () => {
    const key = readHash().connect;
    if (key !== state.connectKey) { state.connectKey = key; state.cli = null; state.local = null; state.refs = new Map(); listen(); render(); }
  });
  // Relative times age: redraw them now and then.
  setInterval(render, 30000);
}

async function boot() {
  state.connectKey = readHash().connect;
  state.appChosen = Boolean(readHash().app);
  wire();
  listen();
  try { await loadApps(); } catch (error) { toast(`Cannot reach the collector: ${error.message}`, true); }
  writeHash();
  await loadHeatmap();
}

boot();
