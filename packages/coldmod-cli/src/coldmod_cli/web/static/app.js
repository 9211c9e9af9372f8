// Coldmod web UI: hand-written, no dependencies, no build step.
// Every string from the network (keys, paths, app names, messages, diffs) is
// put into the page with textContent, as an attribute value or drawn on the
// canvas as text, never as HTML.
// At any size the page stays within about a screen: the picture is a canvas
// treemap (packages → modules → functions) of fixed height, and the table
// draws only the rows scrolled into view.
"use strict";

const HOT_FROM = 2 / 3;       // share of the log scale (1 call … the most called) from which a function is hot
const REFETCH_GAP_MS = 500;   // live updates: at most two heatmap fetches a second (longer for big apps)
const OVERSCAN = 10;          // table rows drawn above and below the visible ones
const MIN_CLICK_PX = 10;      // a function drawn at least this wide and high is clicked; smaller ones zoom
const DEFAULT_LINES = 8;      // size of a function whose length cannot be told (the last of its file)
const MAX_LINES = 400;        // cap, so one long function does not hide its file
const BIG_APP = 20000;        // from this many functions: filter once typing pauses, draw the picture after the table
const DAY_MS = 86400000;      // the collector's history counts calls per UTC day
const SPARK_DAYS = 400;       // the sparkline's span: the history the collector keeps

const $ = (id) => document.getElementById(id);

const state = {
  apps: [],
  appsTotal: 0,
  app: null,
  heatmap: null,             // {now_ms, dropped_*, ...} and the rows in `all`
  all: [],                   // one row per key: {key, calls, state, ...}
  max: 0,                    // most calls of one function
  hotFrom: 1,                // calls from which a function is hot
  clockSkew: 0,              // server time minus ours
  filter: "all",
  text: "",
  quietDays: 0,              // "no call in the last N days" (0: off)
  history: null,             // {key, days, calls} of the selected function, from /api/history
  sort: { col: "calls", asc: true },
  shown: [],                 // the filtered, sorted rows
  shownDirty: true,
  selected: null,
  connectKey: null,
  token: null,               // this page's hold on the pairing
  pairingError: "",
  cli: null,                 // {connected, seen, app, root, hostname}
  local: null,               // Map key -> {key, path, line, ignored}
  refs: new Map(),           // key -> {references, verdict, reasons}
  appChosen: false,
  mapDirty: true,
  view: [],                  // treemap zoom: path segments of the node shown
  lastFetchMs: 0,
  removed: new Set(),        // keys removed from this page: gone from the checkout, still in the heatmap until a redeploy
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

function plural(n, word) {
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}

function callsText(row) {
  if (row.calls === null) return "—";
  return (row.lower_bound ? "≥ " : row.estimated ? "~" : "") + compact(row.calls);
}

function callsTitle(row) {
  if (row.calls === null) return "";
  if (row.lower_bound) return `at least ${row.calls.toLocaleString("en")} calls (a lower bound: the tracer saw this many for sure)`;
  return `${row.calls.toLocaleString("en")} call${row.calls === 1 ? "" : "s"}${row.estimated ? " (estimated)" : ""}`;
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

// A static report (`coldmod report --html DIR`) carries its data in data.js: no collector, no network.
const REPORT = window.COLDMOD_REPORT || null;

async function getJSON(url) {
  if (REPORT && url.startsWith("/api/apps")) return REPORT.apps;
  const response = await fetch(url, { cache: "no-store" });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

async function postJSON(url, body, headers) {
  // The custom header and the JSON type force a CORS preflight on any other site, which is never granted.
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Coldmod": "1", ...(headers || {}) },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
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

// The one rule for cold, warm and hot; the legend states it with the numbers of this heatmap.
function hotFrom(max) {
  return Math.max(1, Math.ceil(Math.pow(max + 1, HOT_FROM) - 1 - 1e-9));
}

function classify(calls, hot) {
  if (calls === null) return "ignored";
  if (calls === 0) return "cold";
  return calls >= hot ? "hot" : "warm";
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

// Rebuild every row from the heatmap (columns) and the checkout; called when either changes.
function rebuild() {
  const h = state.heatmap;
  const out = [];
  let max = 0;
  if (h) {
    for (let i = 0; i < h.count; i += 1) if (h.calls[i] > max) max = h.calls[i];
    const hot = hotFrom(max);
    for (let i = 0; i < h.count; i += 1) {
      const calls = h.calls[i];
      out.push({
        key: h.key[i],
        calls,
        estimated: Boolean(h.estimated[i]),
        lower_bound: Boolean(h.lower_bound[i]),
        first_seen_ms: h.first_seen_ms[i],
        last_seen_ms: h.last_seen_ms[i],
        tracked_since_ms: h.tracked_since_ms[i],
        calls_7d: h.calls_7d ? h.calls_7d[i] : 0,
        calls_30d: h.calls_30d ? h.calls_30d[i] : 0,
        calls_90d: h.calls_90d ? h.calls_90d[i] : 0,
        version_set: h.version_set ? h.version_set[i] : -1,
        path: h.paths[h.path[i]],
        line: h.line[i],
        state: classify(calls, hot),
        ignored: false,
      });
    }
  }
  if (state.local) {
    const known = new Set(out.map((r) => r.key));
    for (const r of out) r.ignored = isIgnored(r.key);
    // Ignored keys are not traced, so the collector does not have them: show them from the checkout.
    for (const local of state.local.values()) {
      if (local.ignored && !known.has(local.key)) {
        out.push({ key: local.key, calls: null, estimated: false, lower_bound: false, first_seen_ms: 0,
          last_seen_ms: 0, tracked_since_ms: 0, calls_7d: 0, calls_30d: 0, calls_90d: 0, version_set: -1,
          path: local.path, line: local.line, state: "ignored", ignored: true });
      }
    }
  }
  // In key order once, so that every sort below is a stable sort on one number (no string ties).
  for (let i = 1; i < out.length; i += 1) {
    if (out[i - 1].key > out[i].key) { out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)); break; }
  }
  state.all = out;
  state.max = max;
  state.hotFrom = hotFrom(max);
  state.shownDirty = true;
  state.mapDirty = true;
}

// The collector's clock: "the last N days" end there (the heatmap's snapshot time, else ours corrected).
function nowMs() {
  return (state.heatmap && state.heatmap.now_ms) || Date.now() + state.clockSkew;
}

// `coldmod cold --since Nd`: no call in the last N days, and traced at least that long.
function quietFor(row, days, now) {
  if (row.calls === null) return false;
  const from = now - days * DAY_MS;
  return row.tracked_since_ms <= from && (row.calls === 0 || !row.last_seen_ms || row.last_seen_ms < from);
}

function matches(row) {
  if (state.filter === "ignored") { if (!row.ignored) return false; }
  else if (row.calls === null) return false;
  else if (state.filter !== "all" && row.state !== state.filter) return false;
  if (state.quietDays > 0 && !quietFor(row, state.quietDays, nowMs())) return false;
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
  recent: (r) => (r.calls === null ? -1 : r.calls_90d),
  last: (r) => r.last_seen_ms,
  since: (r) => r.tracked_since_ms,
  where: (r) => `${r.path}\u0000${String(r.line).padStart(8, "0")}`,
  refs: (r) => { const ref = state.refs.get(r.key); return ref ? ({ safe: 0, "test-only": 1, review: 2, unsafe: 3 }[ref.verdict] ?? 4) : 5; },
};

// Rows arrive in key order; ties keep that order (the index breaks them), so no string compares.
function sorted(list) {
  const sign = state.sort.asc ? 1 : -1;
  if (state.sort.col === "key") return sign > 0 ? list : list.reverse();
  const key = SORTS[state.sort.col] || SORTS.calls;
  const keys = list.map(key);
  const order = list.map((_, i) => i);
  if (typeof keys[0] === "number") order.sort((a, b) => sign * (keys[a] - keys[b]) || a - b);
  else order.sort((a, b) => (keys[a] < keys[b] ? -sign : keys[a] > keys[b] ? sign : a - b));
  return order.map((i) => list[i]);
}

function shownRows() {
  if (state.shownDirty) {
    state.shownDirty = false;
    state.shown = sorted(state.all.filter(matches));
  }
  return state.shown;
}

// ------------------------------------------------------------------ treemap

// The tree of the shown functions: one node per directory and file, leaves sized by lines.
function buildTree(rows) {
  const root = { name: "", path: [], children: new Map(), leaves: [], size: 0, cold: 0, count: 0 };
  const byFile = new Map();
  for (const r of rows) {
    if (r.calls === null) continue;
    const file = r.path || "(unknown file)";
    if (!byFile.has(file)) byFile.set(file, []);
    byFile.get(file).push(r);
  }
  for (const [file, list] of byFile) {
    list.sort((a, b) => a.line - b.line);
    let node = root;
    for (const part of file.split("/")) {
      if (!node.children.has(part)) {
        node.children.set(part, { name: part, path: [...node.path, part], children: new Map(), leaves: [], size: 0, cold: 0, count: 0 });
      }
      node = node.children.get(part);
    }
    for (let i = 0; i < list.length; i += 1) {
      const next = list[i + 1];
      const lines = next && list[i].line && next.line > list[i].line ? next.line - list[i].line : DEFAULT_LINES;
      node.leaves.push({ row: list[i], size: Math.min(MAX_LINES, Math.max(1, lines)) });
    }
  }
  (function total(node) {
    node.size = 0; node.cold = 0; node.count = 0;
    for (const leaf of node.leaves) { node.size += leaf.size; node.count += 1; if (leaf.row.calls === 0) node.cold += 1; }
    for (const child of node.children.values()) { total(child); node.size += child.size; node.cold += child.cold; node.count += child.count; }
  })(root);
  return root;
}

// Squarified layout (Bruls et al.) of weighted items into the rectangle; returns [item, x, y, w, h].
// Items are taken largest first, so a row's largest area is its first and its smallest its last:
// the worst aspect ratio of a row is known in O(1) as it grows.
function squarify(items, x, y, w, h) {
  const out = [];
  let total = 0;
  for (const it of items) total += it.size;
  if (!total || w <= 0 || h <= 0) return out;
  const scale = (w * h) / total;
  const list = items.slice().sort((a, b) => b.size - a.size);
  let i = 0;
  while (i < list.length) {
    const side = Math.min(w, h);
    const s2 = side * side;
    const big = list[i].size * scale;
    let sum = big;
    let worst = Math.max(s2 / big, big / s2);
    let j = i + 1;
    while (j < list.length) {
      const area = list[j].size * scale;
      const candidate = sum + area;
      const c2 = candidate * candidate;
      const next = Math.max((s2 * big) / c2, c2 / (s2 * area));
      if (next > worst) break;
      sum = candidate; worst = next; j += 1;
    }
    const thick = sum / side;
    let offset = 0;
    for (let k = i; k < j; k += 1) {
      const length = (list[k].size * scale) / thick;
      if (w >= h) out.push([list[k], x, y + offset, thick, length]);
      else out.push([list[k], x + offset, y, length, thick]);
      offset += length;
    }
    if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
    i = j;
  }
  return out;
}

const map = { tree: null, leaves: [], groups: [], width: 0, height: 0, path: [] };

function viewNode() {
  let node = map.tree;
  for (const part of state.view) {
    const next = node && node.children.get(part);
    if (!next) { state.view = node ? node.path : []; break; }
    node = next;
  }
  return node;
}

// Lay out the node's children (directories/files as groups, functions as leaves), recursively.
function layout(node, x, y, w, h, depth) {
  const items = [...node.children.values(), ...node.leaves];
  for (const [item, ix, iy, iw, ih] of squarify(items, x, y, w, h)) {
    if (item.row) { map.leaves.push({ row: item.row, x: ix, y: iy, w: iw, h: ih }); continue; }
    const group = { node: item, x: ix, y: iy, w: iw, h: ih, depth, label: iw > 48 && ih > 30 };
    map.groups.push(group);
    const pad = iw > 8 && ih > 8 ? 1 : 0;
    const head = group.label ? 14 : 0;
    layout(item, ix + pad, iy + pad + head, iw - 2 * pad, ih - 2 * pad - head, depth + 1);
  }
}

function drawTreemap() {
  const canvas = $("treemap-canvas");
  const box = $("treemap");
  const width = box.clientWidth, height = box.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  map.width = width; map.height = height;
  if (state.mapDirty) {
    state.mapDirty = false;
    map.tree = buildTree(shownRows());
  }
  map.leaves = []; map.groups = [];
  let node = viewNode();
  // A directory holding nothing but one directory shows that one (its label would only take a row).
  while (node && node.leaves.length === 0 && node.children.size === 1) node = node.children.values().next().value;
  map.path = node ? node.path : [];   // what is shown: the zoom, or below it when that holds one directory
  if (node) layout(node, 0, 0, width, height, 0);
  const ctx = canvas.getContext("2d");
  paintCells(ctx, canvas.width, canvas.height, dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  // Cold is unmistakable: striped where there is room, outlined where it is selected.
  ctx.strokeStyle = "rgba(255,255,255,.45)";
  ctx.lineWidth = 1.5;
  for (const leaf of map.leaves) {
    if (leaf.row.calls !== 0 || leaf.w < 8 || leaf.h < 8) continue;
    ctx.save();
    ctx.beginPath(); ctx.rect(leaf.x, leaf.y, leaf.w - 1, leaf.h - 1); ctx.clip();
    ctx.beginPath();
    for (let d = -leaf.h; d < leaf.w; d += 6) { ctx.moveTo(leaf.x + d, leaf.y + leaf.h); ctx.lineTo(leaf.x + d + leaf.h, leaf.y); }
    ctx.stroke();
    ctx.restore();
  }
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const g of map.groups) {
    if (!g.label) continue;
    ctx.fillStyle = "#374151";
    const text = `${g.node.name} · ${g.node.cold}/${g.node.count} cold`;
    ctx.save(); ctx.beginPath(); ctx.rect(g.x, g.y, g.w - 2, 14); ctx.clip();
    ctx.fillText(text, g.x + 3, g.y + 1);
    ctx.restore();
  }
  for (const leaf of map.leaves) {
    if (leaf.w < 60 || leaf.h < 16) continue;
    const name = leaf.row.key.split(".").pop();
    ctx.fillStyle = leaf.row.calls === 0 ? "#fff" : "#1f2328";
    ctx.save(); ctx.beginPath(); ctx.rect(leaf.x, leaf.y, leaf.w - 2, leaf.h - 1); ctx.clip();
    ctx.fillText(name, leaf.x + 3, leaf.y + 2);
    ctx.restore();
  }
  const selected = map.leaves.find((leaf) => leaf.row.key === state.selected);
  if (selected) {
    ctx.strokeStyle = "#111827"; ctx.lineWidth = 2;
    ctx.strokeRect(selected.x + 1, selected.y + 1, Math.max(2, selected.w - 2), Math.max(2, selected.h - 2));
  }
  canvas.dataset.cells = String(map.leaves.length);
  canvas.dataset.cold = String(map.leaves.filter((leaf) => leaf.row.calls === 0).length);
  canvas.dataset.view = map.path.join("/");
  renderCrumbs();
}

// Groups and cells straight into pixels: at 100,000 cells this is ~50× faster than fillRect each.
function paintCells(ctx, width, height, dpr) {
  const image = ctx.createImageData(width, height);
  const px = new Uint32Array(image.data.buffer);
  const fill = (x, y, w, h, colour) => {
    const x0 = Math.max(0, Math.round(x * dpr)), x1 = Math.min(width, Math.max(x0 + 1, Math.round((x + w) * dpr)));
    const y0 = Math.max(0, Math.round(y * dpr)), y1 = Math.min(height, Math.max(y0 + 1, Math.round((y + h) * dpr)));
    for (let row = y0; row < y1; row += 1) px.fill(colour, row * width + x0, row * width + x1);
  };
  const groupColours = [rgba("#d5dbe3"), rgba("#e4e8ee")];
  for (const g of map.groups) fill(g.x, g.y, g.w, g.h, groupColours[g.depth % 2]);
  const cold = rgba(getComputedStyle(document.documentElement).getPropertyValue("--cold").trim() || "#1d4ed8");
  const colours = new Map();
  for (const leaf of map.leaves) {
    const calls = leaf.row.calls;
    let colour = cold;
    if (calls > 0) {
      const bucket = Math.round(Math.log10(calls) * 20);   // a few hundred colours, not one per count
      colour = colours.get(bucket);
      if (colour === undefined) { colour = rgba(heat(Math.pow(10, bucket / 20), state.max)); colours.set(bucket, colour); }
    }
    const gap = leaf.w > 4 && leaf.h > 4 ? 1 : 0;
    fill(leaf.x, leaf.y, leaf.w - gap, leaf.h - gap, colour);
  }
  ctx.putImageData(image, 0, 0);
}

// A CSS colour as one little-endian RGBA pixel (the canvas parses it once).
const rgbaCache = new Map();
function rgba(css) {
  let value = rgbaCache.get(css);
  if (value === undefined) {
    const probe = rgba.ctx || (rgba.ctx = document.createElement("canvas").getContext("2d", { willReadFrequently: true }));
    probe.clearRect(0, 0, 1, 1);
    probe.fillStyle = css;
    probe.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = probe.getImageData(0, 0, 1, 1).data;
    value = ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
    rgbaCache.set(css, value);
  }
  return value;
}

function renderCrumbs() {
  const path = map.path;
  const crumbs = [el("button", { type: "button", disabled: path.length === 0, onclick: () => zoom([]), text: "all files" })];
  path.forEach((part, i) => {
    crumbs.push(el("span", { text: "›" }));
    crumbs.push(el("button", { type: "button", disabled: i === path.length - 1, onclick: () => zoom(path.slice(0, i + 1)), text: part }));
  });
  $("crumbs").replaceChildren(...crumbs);
}

function zoom(path) {
  state.view = path;
  drawTreemap();
}

function leafAt(x, y) {
  for (const leaf of map.leaves) {
    if (x >= leaf.x && x < leaf.x + leaf.w && y >= leaf.y && y < leaf.y + leaf.h) return leaf;
  }
  return null;
}

function childGroupAt(x, y) {
  // The group one level below the view under the point (groups are pushed parents first).
  return map.groups.find((g) => g.depth === 0 && x >= g.x && x < g.x + g.w && y >= g.y && y < g.y + g.h) || null;
}

function onTreemapClick(event) {
  const rect = $("treemap-canvas").getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top;
  const leaf = leafAt(x, y);
  if (leaf && leaf.w >= MIN_CLICK_PX && leaf.h >= MIN_CLICK_PX) { select(leaf.row.key); return; }
  const group = childGroupAt(x, y);
  if (group) { zoom(group.node.path); return; }
  if (leaf) select(leaf.row.key);
}

function onTreemapMove(event) {
  const rect = $("treemap-canvas").getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top;
  const leaf = leafAt(x, y);
  const tip = $("tip");
  if (!leaf) { tip.hidden = true; return; }
  const r = leaf.row;
  tip.textContent = `${r.key}\n${r.calls === 0 ? "never called" : callsTitle(r)} · last ${ago(r.last_seen_ms)}\n${r.path}:${r.line}`;
  tip.hidden = false;
  tip.style.left = `${Math.min(x + 12, Math.max(0, map.width - tip.offsetWidth - 4))}px`;
  tip.style.top = `${y + 16 + tip.offsetHeight > map.height ? y - tip.offsetHeight - 8 : y + 16}px`;
}

// Where a key's cell is on screen (for tests and for people reading the code: a click there selects it).
function cellCenter(key) {
  const leaf = map.leaves.find((l) => l.row.key === key);
  if (!leaf) return null;
  const rect = $("treemap-canvas").getBoundingClientRect();
  return { x: rect.left + leaf.x + leaf.w / 2, y: rect.top + leaf.y + leaf.h / 2, w: leaf.w, h: leaf.h };
}

// ------------------------------------------------------------------ render

function renderApps() {
  const select = $("app");
  const options = state.apps.map((a) =>
    el("option", { value: a.app, text: `${a.app} (${plural(a.keys, "function")}, ${a.cold_keys} cold)` }));
  if (state.app && !state.apps.some((a) => a.app === state.app)) options.unshift(el("option", { value: state.app, text: state.app }));
  if (state.appsTotal > state.apps.length) {
    options.push(el("option", { disabled: true, value: "", text: `… ${state.appsTotal - state.apps.length} more: open #app=NAME` }));
  }
  select.replaceChildren(...options);
  if (state.app) select.value = state.app;
}

function renderSummary() {
  const counts = { cold: 0, warm: 0, hot: 0 };
  let calls = 0, traced = 0, ignored = 0;
  for (const r of state.all) {
    if (r.ignored) ignored += 1;
    if (r.calls === null || state.removed.has(r.key)) continue;   // a removed function is no longer cold code
    traced += 1; counts[r.state] += 1; calls += r.calls;
  }
  const hot = state.hotFrom;
  const boxes = [
    ["functions", traced, "", ""],
    ["cold", counts.cold, "cold", "never called since tracked"],
    ["warm", counts.warm, "warm", hot > 1 ? `1 to ${hot - 1} calls` : ""],
    ["hot", counts.hot, "hot", `${hot} calls or more`],
    ["calls", compact(calls), "", ""],
  ];
  if (state.local) boxes.push(["ignored", ignored, "", "in [ignore] keys of the rootmarker"]);
  const h = state.heatmap;
  if (h && (h.dropped_unknown || h.dropped_updates)) boxes.push(["dropped updates", compact(h.dropped_unknown + h.dropped_updates), "", ""]);
  $("summary").replaceChildren(...boxes.map(([label, value, cls, title]) =>
    el("div", { class: `count ${cls}`, "data-count": label, title: title || undefined },
      el("b", { text: typeof value === "number" ? value.toLocaleString("en") : value }), el("span", { text: label }))));
  state.stateTitles = {
    cold: "never called since it was tracked",
    warm: hot > 1 ? `1 to ${hot - 1} calls (below the top third of this app's log scale)` : "",
    hot: `${hot} calls or more: the top third of this app's log scale of calls`,
    ignored: "in [ignore] keys of the rootmarker: not traced",
  };
  for (const button of document.querySelectorAll("[data-filter]")) button.title = state.stateTitles[button.dataset.filter] || "";
  const max = state.max;
  $("legend-scale").textContent = max ? `calls, log scale: 1 … ${compact(max)}` : "calls, log scale";
  $("legend-thresholds").textContent = max
    ? `Warm: 1–${Math.max(1, hot - 1)} calls; hot: ${hot.toLocaleString("en")} calls or more — the top third of the log scale up to the most-called function (${max.toLocaleString("en")} calls), so the thresholds move with each app's traffic.`
    : "Warm and hot are set by each app's own traffic: hot is the top third of the log scale up to its most-called function.";
}

function verdictCell(r) {
  const cell = el("td", { class: "connect-only" });
  const ref = state.refs.get(r.key);
  if (!ref) {
    if (state.local && state.local.has(r.key) && !r.ignored) cell.textContent = "…";
    return cell;
  }
  const reasons = ref.reasons && ref.reasons.length ? `\n${ref.reasons.join("\n")}` : "";
  if (r.calls) {   // a called function is never a removal candidate, whatever its references
    cell.append(el("span", { class: "verdict called", text: "called" }));
    cell.title = `called ${callsText(r)} times in production: removing it changes what runs (references: ${ref.verdict})${reasons}`;
    return cell;
  }
  cell.append(el("span", { class: `verdict ${ref.verdict}`, text: ref.verdict }));
  cell.title = `${plural(ref.references, "reference")}: ${ref.verdict}${reasons}`;
  return cell;
}

// The buttons for one function of the paired checkout (none for a key it does not have, or ignores).
function actionButtons(r) {
  const local = state.local && state.local.get(r.key);
  const live = Boolean(state.cli && state.cli.connected);
  if (!local || local.ignored) return [];   // only functions of the checkout can be acted on
  return [
    el("button", { type: "button", disabled: !live, "data-action": "ignore", onclick: () => ignore(r.key), text: "Ignore" }),
    el("button", { type: "button", disabled: !live, "data-action": "remove", onclick: () => planRemoval(r.key), text: "Remove" }),
    el("button", { type: "button", disabled: !live, "data-action": "open", onclick: () => openEditor(r.key), text: "Open" }),
  ];
}

function actions(r) {
  const cell = el("td", { class: "actions connect-only c-actions" });
  cell.append(...actionButtons(r));
  return cell;
}

const REMOVED_NOTE = "removed in the checkout; redeploy to update the heatmap";

function rowHeight() {
  return parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row")) || 30;
}

function tableRow(r) {
  const keyCell = el("td", { class: "key", title: r.key }, el("span", { class: "k", text: r.key }));
  if (r.ignored) keyCell.append(el("span", { class: "tag ignored", text: "ignored" }));
  if (state.removed.has(r.key)) keyCell.append(el("span", { class: "tag removed", text: REMOVED_NOTE }));
  else if (state.local && !state.local.has(r.key)) keyCell.append(el("span", { class: "tag", text: "not in checkout" }));
  const where = r.path ? `${r.path}:${r.line}` : "";
  return el("tr", { "data-key": r.key, class: r.key === state.selected ? "selected" : "", onclick: (e) => { if (!e.target.closest("button")) selectRow(r.key); } },
    el("td", {}, state.removed.has(r.key) ? el("span", { class: "state removed", title: REMOVED_NOTE, text: "removed" })
      : el("span", { class: `state ${r.state}`, title: (state.stateTitles || {})[r.state], text: r.state })),
    keyCell,
    el("td", { class: "num" + (r.estimated || r.lower_bound ? " est" : ""), title: callsTitle(r), text: callsText(r) }),
    el("td", { class: "num c-recent", title: "calls in the last 7, 30 and 90 days",
      text: r.calls === null ? "—" : `${compact(r.calls_7d)} / ${compact(r.calls_30d)} / ${compact(r.calls_90d)}` }),
    el("td", { class: "c-last", title: iso(r.last_seen_ms), text: ago(r.last_seen_ms) }),
    el("td", { class: "c-since", title: iso(r.tracked_since_ms), text: r.tracked_since_ms ? ago(r.tracked_since_ms) : "" }),
    el("td", { class: "where c-where", title: where, text: where }),
    verdictCell(r),
    actions(r));
}

// Only the rows in view (plus a margin) exist; spacers keep the scrollbar honest.
function renderRows() {
  const shown = shownRows();
  const scroller = $("table-scroll");
  const height = rowHeight();
  const head = $("rows").tHead.offsetHeight;
  const first = Math.max(0, Math.floor(Math.max(0, scroller.scrollTop - head) / height) - OVERSCAN);
  const count = Math.ceil(scroller.clientHeight / height) + 2 * OVERSCAN;
  const last = Math.min(shown.length, first + count);
  const columns = document.body.classList.contains("paired") ? 9 : 7;
  const body = el("tbody");
  const spacer = (rows) => {
    const tr = el("tr", { class: "spacer", "aria-hidden": "true" }, el("td", { colspan: columns }));
    tr.style.height = `${rows * height}px`;   // CSSOM, not a style attribute: the CSP allows no inline style
    return tr;
  };
  if (first > 0) body.append(spacer(first));
  for (let i = first; i < last; i += 1) body.append(tableRow(shown[i]));
  if (last < shown.length) body.append(spacer(shown.length - last));
  $("rows").replaceChild(body, $("rows").tBodies[0]);
  $("rows").dataset.rows = String(shown.length);
}

function renderTable() {
  const shown = shownRows();
  renderRows();
  $("shown").textContent = `${plural(shown.length, "function")} shown`;
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort.col);
    th.classList.toggle("asc", th.dataset.sort === state.sort.col && state.sort.asc);
  }
}

// The versions that have a row's key, by name (a label, else a fingerprint prefix).
function versionNames(row) {
  const h = state.heatmap;
  if (!h || !h.version_sets || row.version_set < 0) return [];
  return (h.version_sets[row.version_set] || []).map((i) => (h.versions[i] ? h.versions[i].name : "?"));
}

function day(ms) {
  return ms ? new Date(ms).toISOString().slice(0, 10) : "";
}

// The one details panel of the selected function (a panel above the table; on a phone the sheet a tap
// on a row opens, and the only place its verdict, reasons and actions show): its calls in time, its
// versions, a sparkline of its calls per UTC day (not in a static report: it has no history) and, with a
// checkout paired, the verdict, the reasons and the actions.
function renderDetails() {
  const row = state.selected ? state.all.find((r) => r.key === state.selected) : null;
  $("details").hidden = !row;
  if (!row) return;
  const h = state.heatmap;
  const all = h && h.versions ? h.versions.length : 0;
  const names = versionNames(row);
  const when = (ms) => (ms ? `${iso(ms)} (${ago(ms)})` : "never");
  const traced = row.calls !== null;
  const facts = [
    ["State", state.removed.has(row.key) ? REMOVED_NOTE : row.state],
    ["Calls", !traced ? "not traced"
      : `${callsTitle(row) || "none"} · last 7 days ${row.calls_7d.toLocaleString("en")}, 30 days ${row.calls_30d.toLocaleString("en")}, 90 days ${row.calls_90d.toLocaleString("en")}`],
    ["Last call", when(row.last_seen_ms)],
    ["First call", when(row.first_seen_ms)],
    ["Tracked since", row.tracked_since_ms ? when(row.tracked_since_ms) : ""],
    ["Versions", !traced ? "" : names.length ? `${names.join(", ")}${all > 1 && names.length === all ? " (every live version)" : ""}` : "—"],
    ["Defined at", row.path ? `${row.path}:${row.line}` : ""],
  ];
  // Quiet for the filter's N days but called at a period's end before: review, not cold (coldmod_cli.seasonal's rule).
  const history = state.history && state.history.key === row.key ? state.history : null;
  if (history && history.seasonal && state.quietDays > 0 && quietFor(row, state.quietDays, nowMs())) {
    facts.push(["Seasonal", `${history.seasonal}: review before removing`]);
  }
  $("details-key").textContent = row.key;
  $("details-facts").replaceChildren(...facts.filter(([, value]) => value).flatMap(([name, value]) =>
    [el("dt", { text: name }), el("dd", { "data-fact": name.toLowerCase().replace(/ /g, "-"), text: value })]));
  // The verdict heads its reasons, one a line, as `coldmod rm` prints them ("path:line kind").
  const ref = state.refs.get(row.key);
  const verdict = $("details-verdict");
  verdict.className = "connect-only" + (ref ? ` verdict ${row.calls ? "called" : ref.verdict}` : "");
  verdict.textContent = !ref ? (state.local && state.local.has(row.key) && !row.ignored ? "Verdict: …" : "")
    : row.calls ? `Called in production: removing it changes what runs (references: ${ref.verdict}).`
      : `Verdict: ${ref.verdict} (${plural(ref.references, "reference")})`;
  $("details-reasons").replaceChildren(...((ref && ref.reasons) || []).map((reason) => el("li", { text: reason })));
  $("details-actions").replaceChildren(...(state.removed.has(row.key) ? [] : actionButtons(row)));
  $("details-history").hidden = Boolean(REPORT) || !traced;
  if (!$("details-history").hidden) drawSpark(row);
}

function drawSpark(row) {
  const canvas = $("details-spark");
  const note = $("details-spark-note");
  const history = state.history && state.history.key === row.key ? state.history : null;
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400, height = canvas.clientHeight || 36;
  canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!history) { note.textContent = "loading the history…"; canvas.dataset.bars = ""; return; }
  const today = Math.floor(nowMs() / DAY_MS);
  const first = today - SPARK_DAYS + 1;
  let max = 0, drawn = 0, total = 0;
  for (let i = 0; i < history.days.length; i += 1) {
    if (history.days[i] >= first && history.days[i] <= today) max = Math.max(max, history.calls[i]);
  }
  const step = width / SPARK_DAYS;
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--hot").trim() || "#b91c1c";
  for (let i = 0; i < history.days.length; i += 1) {
    const d = history.days[i];
    if (d < first || d > today) continue;
    // Square-root heights: a month-end's handful of calls stays visible beside a busy day's thousands.
    const h = Math.max(2, Math.sqrt(history.calls[i] / max) * (height - 2));
    ctx.fillRect((d - first) * step, height - h, Math.max(1, step), h);
    drawn += 1; total += history.calls[i];
  }
  canvas.dataset.bars = String(drawn);
  canvas.dataset.first = String(first);
  canvas.title = `calls per UTC day, ${day(first * DAY_MS)} to ${day(today * DAY_MS)}`;
  note.textContent = drawn
    ? `${plural(total, "call")} on ${plural(drawn, "day")} of the last ${SPARK_DAYS}; busiest day ${max.toLocaleString("en")}`
    : `no call in the last ${SPARK_DAYS} days`;
}

let historyFor = null;
async function loadHistory(key) {
  historyFor = key;
  if (!state.history || state.history.key !== key) state.history = null;   // the same function's stays until renewed
  if (!key || !state.app || REPORT) return;   // a static report has no history to ask for
  try {
    const data = await getJSON(`/api/history?app=${encodeURIComponent(state.app)}&key=${encodeURIComponent(key)}`);
    if (historyFor !== key) return;   // another function was selected meanwhile
    const found = data.history[key] || { days: [], calls: [] };
    state.history = { key, days: found.days, calls: found.calls, seasonal: found.seasonal || null };
  } catch (error) {
    if (historyFor === key) toast(`Cannot load the history of ${key}: ${error.message}`, true);
    return;
  }
  render();
}

function renderConnect() {
  const paired = Boolean(state.connectKey);
  document.body.classList.toggle("paired", paired);
  $("connect").hidden = !paired;
  // A pairing whose CLI has gone cannot be taken over by a new CLI: offer a new pairing instead.
  const gone = Boolean(state.cli && state.cli.seen && !state.cli.connected);
  $("connect-new").hidden = Boolean(REPORT) || (paired && !state.pairingError && !gone);   // a report pairs nothing
  $("connect-new").textContent = paired ? "New pairing" : "Connect a checkout";
  $("pairing-error").hidden = !state.pairingError;
  $("pairing-error-text").textContent = state.pairingError;
  const badge = $("connect-state");
  const where = $("connect-where");
  const cli = state.cli;
  if (!paired) { $("pairing").hidden = true; return; }
  if (state.pairingError) {
    badge.textContent = "not paired";
    badge.className = "badge disconnected";
    where.textContent = "";
    $("pairing").hidden = true;
  } else if (cli && cli.connected) {
    badge.textContent = "CLI connected";
    badge.className = "badge connected";
    where.textContent = `${cli.hostname}:${cli.root}`;
    where.title = `app ${cli.app}`;
    $("pairing").hidden = true;
  } else if (cli && cli.seen) {
    badge.textContent = "CLI disconnected";
    badge.className = "badge disconnected";
    where.textContent = `${cli.hostname}:${cli.root} (it reconnects by itself; a new \`coldmod connect\` needs a new pairing)`;
  } else {
    badge.textContent = "waiting for the CLI";
    badge.className = "badge waiting";
    where.textContent = "";
    $("pairing").hidden = false;
    $("pairing-key").textContent = state.connectKey;
  }
}

let frame = 0;
let drawMap = false;
function render(withMap) {
  drawMap = drawMap || Boolean(withMap) || state.mapDirty;
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    $("empty").hidden = state.apps.length > 0 || Boolean(state.heatmap);
    if (!state.apps.length) {
      $("empty").textContent = "No heatmaps yet: run your application under coldmod-trace with COLDMOD_GRPC_HOST pointing at this collector.";
    }
    renderConnect();
    renderSummary();
    renderTable();
    renderDetails();
    document.body.dataset.painted = String(state.heatmap ? state.heatmap.count : 0);
    if (!drawMap) return;
    drawMap = false;
    // A big picture waits one frame, so the counts and the table show first.
    if (state.all.length > BIG_APP) setTimeout(drawTreemap, 0);
    else drawTreemap();
  });
}

function refilter() {
  state.shownDirty = true;
  state.mapDirty = true;
  render(true);
}

function selectRow(key) {
  state.selected = state.selected === key ? null : key;
  loadHistory(state.selected);
  render(true);
}

// Select a function from the picture: its row is scrolled into view (filters let it through).
function select(key) {
  state.selected = key;
  loadHistory(key);
  let index = shownRows().findIndex((r) => r.key === key);
  if (index < 0) {
    state.filter = "all"; state.text = ""; $("search").value = "";
    state.quietDays = 0; $("quiet-days").value = "";
    for (const b of document.querySelectorAll("[data-filter]")) b.classList.toggle("on", b.dataset.filter === "all");
    state.shownDirty = true;
    index = shownRows().findIndex((r) => r.key === key);
  }
  const scroller = $("table-scroll");
  const height = rowHeight();
  scroller.scrollTop = Math.max(0, index * height - scroller.clientHeight / 2);
  renderRows();
  render(true);
  requestAnimationFrame(() => {
    const row = document.querySelector(`tr[data-key="${CSS.escape(key)}"]`);
    if (row) row.scrollIntoView({ block: "nearest" });
  });
}

// ------------------------------------------------------------------- data

async function loadApps() {
  const data = await getJSON("/api/apps");
  state.apps = data.apps;
  state.appsTotal = data.total;
  const names = state.apps.map((a) => a.app);
  if (!state.app || (!names.includes(state.app) && !state.appChosen)) {
    const wanted = readHash().app;
    state.app = wanted || (state.cli && names.includes(state.cli.app) ? state.cli.app : names[0] || null);
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
      if (!state.app) { state.heatmap = null; rebuild(); break; }
      // A busy collector commits many times a second: refetch at most twice a second, less for big apps.
      const gap = Math.max(REFETCH_GAP_MS, 4 * state.lastFetchMs);
      const wait = lastFetch + gap - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      lastFetch = Date.now();
      if (REPORT) {   // the report's one heatmap, its times read as of when it was made
        state.heatmap = REPORT.heatmap;
        state.clockSkew = REPORT.now_ms - Date.now();
        rebuild();
        break;
      }
      try {
        const response = await fetch(`/api/heatmap?app=${encodeURIComponent(state.app)}`, { cache: "no-store" });
        const data = await response.json().catch(() => ({}));
        if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
        state.lastFetchMs = Date.now() - lastFetch;
        if (data.app === state.app) {
          state.heatmap = data;
          const now = Number(response.headers.get("X-Coldmod-Now-Ms"));
          state.clockSkew = now ? now - Date.now() : 0;
          rebuild();
          if (state.selected) loadHistory(state.selected);
        }
      } catch (error) {
        toast(`Cannot load the heatmap: ${error.message}`, true);
      }
    } while (again);
    render(true);
    document.body.dataset.loaded = state.app || "";
    loading = null;
  })();
  return loading;
}

// -------------------------------------------------------------------- live

let source = null;
function listen() {
  if (source) source.close();
  const url = state.connectKey && state.token
    ? `/api/events/${encodeURIComponent(state.connectKey)}?token=${encodeURIComponent(state.token)}`
    : "/api/events";
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
  source.addEventListener("pairing", (event) => {
    state.pairingError = JSON.parse(event.data).error;
    render();
  });
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
    rebuild();
    render(true);
  });
  source.addEventListener("references", (event) => {
    for (const ref of JSON.parse(event.data)) state.refs.set(ref.key, ref);
    if (state.sort.col === "refs") state.shownDirty = true;
    render();
  });
}

// ----------------------------------------------------------------- connect

const TOKENS = "coldmod-pairing:";   // localStorage: this browser's hold on each pairing it opened

async function command(kind, key) {
  return postJSON(`/api/connect/${encodeURIComponent(state.connectKey)}/commands`, { command: kind, key },
    { "X-Coldmod-Token": state.token || "" });
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

// What the dialog says about a function, honestly: its calls first, then the checkout's verdict.
function removalVerdict(row, plan) {
  const verdict = plan.verdict || "unsafe";
  const called = Boolean(row && (row.calls > 0 || row.lower_bound));
  const calls = !row ? "The collector has no count for it."
    : called ? `Called ${row.lower_bound ? "at least " : ""}${row.calls.toLocaleString("en")} time${row.calls === 1 ? "" : "s"} in production (last ${ago(row.last_seen_ms)}): removing it changes what production runs.`
      : `Never called in production since tracked ${row.tracked_since_ms ? ago(row.tracked_since_ms) : ""}.`;
  const words = {
    safe: "Verdict: safe — nothing in the checkout refers to it.",
    "test-only": "Verdict: test-only — only tests refer to it, listed below; they can go with it.",
    review: "Verdict: review — only indirect or possible uses, listed below; check each before removing.",
    unsafe: "Verdict: unsafe — it is still referenced, listed below.",
  };
  return { called, calls, verdict, text: words[verdict] || words.unsafe, apply: verdict === "safe" && !called && Boolean(row) };
}

async function planRemoval(key) {
  toast(`Planning the removal of ${key}…`);
  let plan;
  try { plan = await command("plan_removal", key); } catch (error) { toast(error.message, true); return; }
  if (!plan.ok) { toast(plan.message, true); return; }
  $("toast").hidden = true;
  const row = state.all.find((r) => r.key === key);
  const told = removalVerdict(row, plan);
  $("dialog-title").textContent = `Remove ${key}`;
  $("dialog-calls").textContent = told.calls;
  $("dialog-calls").className = told.called ? "called" : "";
  $("dialog-verdict").textContent = told.text;
  $("dialog-verdict").className = told.called && told.verdict === "safe" ? "review" : told.verdict;
  $("dialog-verdict").dataset.verdict = told.verdict;
  $("dialog-reasons").replaceChildren(...plan.reasons.map((reason) => el("li", { text: reason })));
  $("dialog-message").textContent = plan.message;
  $("dialog-diff").replaceChildren(...plan.diff.split(/(?<=\n)/).filter(Boolean).map((line) => el("span", {
    class: line.startsWith("+++") || line.startsWith("---") ? "diff-file" : line.startsWith("@@") ? "hunk"
      : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "",
    text: line,
  })));
  const apply = $("dialog-apply");
  apply.hidden = !told.apply;
  apply.disabled = false;
  apply.onclick = async () => {
    apply.disabled = true;
    try {
      const result = await command("apply_removal", key);
      toast(result.message, !result.ok);
      if (result.ok) {
        $("dialog").hidden = true;
        state.removed.add(key);   // the collector keeps it until the app runs without it: say so, and stop counting it
        state.shownDirty = true;
        render(true);
      }
    } catch (error) { toast(error.message, true); }
    apply.disabled = false;
  };
  $("dialog").hidden = false;
}

function usePairing(key, token) {
  state.connectKey = key;
  state.token = token;
  state.pairingError = "";
  state.cli = null; state.local = null; state.refs = new Map();
  if (key && token) localStorage.setItem(TOKENS + key, token);
  rebuild();
  writeHash();
  listen();
  render(true);
}

async function newPairing() {
  try {
    const { key, token } = await postJSON("/api/connect", {});
    usePairing(key, token);
  } catch (error) { toast(`Cannot make a pairing: ${error.message}`, true); }
}

// A page opened on #connect=KEY: this browser's token, or the first claim of a pairing a CLI made.
async function joinPairing(key) {
  const known = localStorage.getItem(TOKENS + key);
  if (known) { usePairing(key, known); return; }
  try {
    const { token } = await postJSON(`/api/connect/${encodeURIComponent(key)}/claim`, {});
    usePairing(key, token);
  } catch (error) {
    state.connectKey = key; state.token = null; state.pairingError = error.message;
    listen();
    render();
  }
}

// -------------------------------------------------------------------- boot

function wire() {
  $("app").addEventListener("change", (event) => {
    state.app = event.target.value;
    state.appChosen = true;
    state.view = [];
    writeHash();
    loadHeatmap();
  });
  for (const button of document.querySelectorAll("[data-filter]")) {
    button.addEventListener("click", () => {
      state.filter = button.dataset.filter;
      for (const b of document.querySelectorAll("[data-filter]")) b.classList.toggle("on", b === button);
      refilter();
    });
  }
  let typing = 0;
  $("search").addEventListener("input", (event) => {
    state.text = event.target.value.trim();
    clearTimeout(typing);
    typing = setTimeout(refilter, state.all.length > BIG_APP ? 120 : 0);
  });
  $("quiet-days").addEventListener("input", (event) => {
    const days = Number(event.target.value);
    state.quietDays = Number.isFinite(days) && days > 0 ? Math.floor(days) : 0;
    clearTimeout(typing);
    typing = setTimeout(refilter, state.all.length > BIG_APP ? 120 : 0);
  });
  $("details-close").addEventListener("click", () => { state.selected = null; loadHistory(null); render(true); });
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const col = th.dataset.sort;
      state.sort = state.sort.col === col ? { col, asc: !state.sort.asc } : { col, asc: col !== "last" };
      state.shownDirty = true;
      render();
    });
  }
  let scrolling = 0;
  $("table-scroll").addEventListener("scroll", () => {
    if (scrolling) return;
    scrolling = requestAnimationFrame(() => { scrolling = 0; renderRows(); });
  }, { passive: true });
  const canvas = $("treemap-canvas");
  canvas.addEventListener("click", onTreemapClick);
  canvas.addEventListener("mousemove", onTreemapMove);
  canvas.addEventListener("mouseleave", () => { $("tip").hidden = true; });
  new ResizeObserver(() => render(true)).observe($("treemap"));
  $("dialog-cancel").addEventListener("click", () => { $("dialog").hidden = true; });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") $("dialog").hidden = true; });
  $("connect-new").addEventListener("click", newPairing);
  $("pairing-copy").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(state.connectKey); toast("Key copied: paste it into `coldmod connect --stdin`."); }
    catch { toast("Select the key and copy it by hand.", true); }
  });
  window.addEventListener("hashchange", () => {
    const key = readHash().connect;
    if (key && key !== state.connectKey) joinPairing(key);
  });
  // Relative times age: redraw them now and then.
  setInterval(render, 30000);
}

async function boot() {
  const hash = readHash();
  state.appChosen = Boolean(hash.app);
  state.app = hash.app;
  wire();
  if (REPORT) {
    $("live").textContent = `report of ${iso(REPORT.now_ms)}`;
  } else if (hash.connect) await joinPairing(hash.connect);
  else listen();
  // The app named in the URL loads while the list of apps does (they are independent).
  const heatmap = state.app ? loadHeatmap() : null;
  try { await loadApps(); } catch (error) { toast(`Cannot reach the collector: ${error.message}`, true); }
  writeHash();
  if (heatmap) await heatmap; else await loadHeatmap();
}

window.coldmod = { cellCenter, state };
boot();
