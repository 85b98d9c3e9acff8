// Dashboard state: snapshot from the REST API, then live updates over the event stream.
"use strict";
window.CS = window.CS || {};

const TOKEN_KEY = "crowdsafe.token";
const MUTE_KEY = "crowdsafe.mute";
const STALE_S = 30;
const SEVERITY_RANK = { critical: 3, warning: 2, info: 1 };
const isOpen = (a) => a.state === "raised" || a.state === "acknowledged";
const $ = (id) => document.getElementById(id);
// A link like /#token=cs_... (printed by `crowdsafe demo`) logs in: the fragment never reaches the
// server or a Referer header, and it is taken out of the address bar and history at once.
(function tokenFromFragment() {
  const m = location.hash.match(/^#token=([A-Za-z0-9_\-]{1,256})$/);
  if (!m) return;
  localStorage.setItem(TOKEN_KEY, m[1]);
  history.replaceState(null, "", location.pathname + location.search);
})();
const S = { token: localStorage.getItem(TOKEN_KEY), role: null, site: null, nodes: null, cameras: {},
  zones: {}, lines: {}, lineTotals: {}, spark: {}, alerts: new Map(), selected: null, abort: null, chartTimer: null, beeped: new Set(),
  audio: null };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, cache: "no-store",
    headers: { ...(options.headers || {}), Authorization: "Bearer " + S.token } });
  if (resp.status === 401) { askToken("The token was not accepted (revoked or mistyped)."); throw new Error("401"); }
  if (resp.status === 429) { setConn(false, "too many failed logins; wait " + (resp.headers.get("Retry-After") || "")
    + " s"); throw new Error("429"); }
  return resp;
}
const getJSON = async (path) => {
  const resp = await api(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
};

function setConn(live, text) {
  const c = $("conn");
  c.className = "badge " + (live ? "live" : "off");
  c.textContent = text;
}

// ---- token -------------------------------------------------------------------------------
function askToken(message) {
  $("token-error").textContent = message || "";
  $("token-input").value = "";
  if (!$("token-dialog").open) $("token-dialog").showModal();
}

async function saveToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  const resp = await fetch("/api/me", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (!resp.ok) {
    $("token-error").textContent = resp.status === 429 ? "Too many failed attempts; wait and retry."
      : "Token not accepted.";
    return;
  }
  S.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  $("token-dialog").close();
  start();
}

// ---- rendering -----------------------------------------------------------------------------
const age = (ts) => Math.max(0, Date.now() / 1000 - ts);
const fmtAge = (s) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`);
// 24-hour everywhere, as the charts and the debrief (a control room's "03:00" is never ambiguous).
const TIME_24H = { hourCycle: "h23", hour: "2-digit", minute: "2-digit", second: "2-digit" };
const fmtTime = (ts) => new Date(ts * 1000).toLocaleTimeString([], TIME_24H);
// never "-0.00": a density a hair below zero (model noise) reads as 0
const num = (v, d = 1) => (v === null || v === undefined ? "–"
  : Number(v).toFixed(d).replace(/^-(0\.?0*)$/, "$1"));
// "1 person", "7 people": counts are estimates, shown whole, and read as a person would say them.
CS.people = (n) => (Math.round(n) === 1 ? "1 person" : `${Math.round(n)} people`);
CS.plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
// Time to clear through the exits; an empty zone has nothing to clear.
CS.fmtClear = (s, count) => (s === null || s === undefined ? "no exits"
  : count !== undefined && count !== null && Math.round(count) === 0 ? "empty"
  : s < 1 ? "< 1 s" : s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`);
const subjectName = (id) => {
  const z = S.site && (S.site.zones.find((x) => x.id === id) || S.site.lines.find((x) => x.id === id));
  return z ? z.name : id;
};

// The worst open alert of each zone or line: it outlines (and pulses) the zone on the map and in the table.
function openAlertsBySubject() {
  const worst = {};
  for (const a of S.alerts.values()) {
    if (!isOpen(a)) continue;
    const cur = worst[a.subject];
    if (!cur || SEVERITY_RANK[a.severity] > SEVERITY_RANK[cur]) worst[a.subject] = a.severity;
  }
  return worst;
}

function losBadge(los) {
  return el("span", los || "–", "los " + (los ? "los-" + los : "los-none"));
}

function renderZones() {
  const body = $("zones-table").tBodies[0];
  body.replaceChildren();
  const alerting = openAlertsBySubject();
  let total = 0, counted = 0, capacity = 0;
  for (const zone of S.site.zones) {
    const r = S.zones[zone.id];
    const tr = el("tr", null, "zone-row" + (zone.id === S.selected ? " selected" : ""));
    tr.dataset.zone = zone.id;
    const severity = alerting[zone.id];
    if (severity) { tr.classList.add("alerting", "alert-" + severity); tr.title = `open ${severity} alert`; }
    tr.addEventListener("click", () => selectZone(zone.id));
    const name = el("td", zone.name);
    const losCell = el("td");
    losCell.appendChild(losBadge(r && r.los));
    const count = el("td", r ? Math.round(r.count) : "–");
    count.dataset.count = zone.id;
    if (r && r.count_low !== null && r.count_high !== null) count.title = `${num(r.count_low)}–${num(r.count_high)}`;
    const occ = el("td", r && r.occupancy_pct !== null ? `${Math.round(r.occupancy_pct)} %` : (zone.capacity ? "–" : "no cap."));
    if (r && r.occupancy_pct >= 100) occ.className = "over";
    const risk = el("td", r ? r.risk || "–" : "–", r && r.risk ? "risk-" + r.risk : "");
    const seen = el("td", r && r.coverage_pct !== null ? `${Math.round(r.coverage_pct)} %` : "–", "opt");
    const ageCell = el("td", r ? fmtAge(age(r.ts)) : "–");
    ageCell.dataset.ts = r ? r.ts : "";
    tr.append(name, losCell, count, occ, el("td", r ? num(r.density, 2) : "–", "opt"), risk, seen, ageCell);
    if (r && age(r.ts) > STALE_S) tr.classList.add("stale");
    body.appendChild(tr);
    CS.updateMapZone(S.nodes, zone.id, r, severity);
    for (const cam of Object.values(S.cameras)) CS.updateCameraZone(cam, zone.id, r, severity);
    if (r) { total += r.count; counted += 1; }
    if (zone.capacity) capacity += zone.capacity; else capacity = NaN;
    // one "now" for every panel: the forecast table shows the same live reading
    for (const td of document.querySelectorAll(`td[data-now="${CSS.escape(zone.id)}"]`)) {
      td.textContent = r ? String(Math.round(r.count)) : "–";
    }
    for (const td of document.querySelectorAll(`td[data-clearance="${CSS.escape(zone.id)}"]`)) {
      td.textContent = r ? CS.fmtClear(r.clearance_s, r.count) : "–";
    }
  }
  renderSiteTotal(total, counted, capacity);
}

// The whole site at a glance: the zones' counts added up (where zones overlap, people in both are
// counted twice), with the share of their total capacity when every zone has one.
function renderSiteTotal(total, counted, capacity) {
  const n = S.site.zones.length;
  const text = counted ? `${Math.round(total)} people on site` : "no reading yet";
  const pct = counted && Number.isFinite(capacity) && capacity > 0 ? `, ${Math.round(100 * total / capacity)} % of capacity` : "";
  const partial = counted && counted < n ? ` (${counted} of ${n} zones reporting)` : "";
  $("site-total").textContent = text + pct + partial;
  const foot = $("zones-total");
  foot.replaceChildren(el("th", "Site total"), el("td"), el("td", counted ? String(Math.round(total)) : "–"),
    el("td", pct ? `${Math.round(100 * total / capacity)} %` : "–"));
  const rest = el("td", partial.trim(), "note");
  rest.colSpan = 4;
  foot.appendChild(rest);
}

const SPARK_POINTS = 60;

// A tiny line of the last quarter hour of flow, scaled to its own peak: the trend at a glance.
function sparkline(values) {
  const w = 80, h = 18;
  const svg = CS.svg("svg", { class: "spark", viewBox: `0 0 ${w} ${h}`, width: w, height: h,
    "aria-hidden": "true" });
  const vals = values.filter((v) => v !== null && v !== undefined);
  if (vals.length < 2) return svg;
  const top = Math.max(...vals, 1e-6);
  const pts = vals.map((v, i) => `${(i / (vals.length - 1)) * w},${h - 1 - (v / top) * (h - 2)}`).join(" ");
  CS.svg("polyline", { points: pts }, svg);
  return svg;
}

function renderLines() {
  const body = $("lines-table").tBodies[0];
  body.replaceChildren();
  if (!S.site.lines.length) {
    const tr = el("tr");
    const td = el("td", "no counting lines configured", "empty");
    td.colSpan = 5;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  const first = Object.values(S.lineTotals)[0];
  // What the API sums: since the scheduled event under way began, or the last 24 h without one.
  const since = first ? (first.since === "last 24 h" ? "the last 24 h (no scheduled event under way)"
    : `${first.since} began (${fmtTime(first.since_ts)})`) : "";
  $("lines-since").textContent = first ? `totals over ${since}` : "";
  for (const th of document.querySelectorAll("th[data-totals]")) {
    th.title = first ? `people ${th.dataset.totals} over ${since}` : "";
  }
  for (const line of S.site.lines) {
    const r = S.lines[line.id];
    const t = S.lineTotals[line.id];
    const tr = el("tr");
    tr.dataset.line = line.id;
    const ageCell = el("td", r ? fmtAge(age(r.ts)) : "–");
    ageCell.dataset.ts = r ? r.ts : "";
    const flow = el("td");
    flow.append(sparkline(S.spark[line.id] || []), document.createTextNode(" " + (r ? num(r.flow_pmm) : "–")));
    tr.append(el("td", line.name), el("td", t ? Math.round(t.in).toLocaleString() : "–"),
      el("td", t ? Math.round(t.out).toLocaleString() : "–"), flow, ageCell);
    body.appendChild(tr);
    CS.updateMapLine(S.nodes, line.id, r);
  }
}

async function loadSparklines() {
  const end = Date.now() / 1000;
  await Promise.all(S.site.lines.map(async (line) => {
    const h = await getJSON(`/api/lines/${encodeURIComponent(line.id)}/history?start=${end - 900}&end=${end + 5}`
      + "&resolution=15");
    S.spark[line.id] = h.points.map((p) => p.flow_pmm).slice(-SPARK_POINTS);
  }));
}

function alertOrder(a, b) {
  return isOpen(b) - isOpen(a) || (a.state === "raised" ? 0 : 1) - (b.state === "raised" ? 0 : 1)
    || (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0)
    || (b.last_raised_ts || b.raised_ts) - (a.last_raised_ts || a.raised_ts);
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren();
  const alerts = [...S.alerts.values()].sort(alertOrder).slice(0, 100);
  const waiting = alerts.filter((a) => a.state === "raised").length;
  const open = alerts.filter(isOpen).length;
  $("alerts-summary").textContent = `${CS.plural(open, "open", "open")}, ${waiting} waiting for acknowledgement`;
  if (!alerts.length) list.appendChild(el("li", "no alerts", "empty"));
  const canAck = S.role === "operator" || S.role === "admin";
  for (const a of alerts) {
    const li = el("li", null, `${a.severity} ${a.state}`);
    li.dataset.alert = a.alert_id;
    const head = el("div");
    head.append(el("strong", `${subjectName(a.subject)} · ${a.rule.replaceAll("_", " ")}`),
      document.createTextNode(" "), el("span", a.state, "state"));
    if (a.occurrences > 1) head.append(document.createTextNode(" "), el("span", `${a.occurrences} times`, "times"));
    const parts = [a.message || "", a.severity, `raised ${fmtTime(a.raised_ts)}`];
    if (a.occurrences > 1 && a.last_raised_ts) parts.push(`again ${fmtTime(a.last_raised_ts)}`);
    if (a.acknowledged_ts) parts.push(`acknowledged by ${a.acknowledged_by || "?"} ${fmtTime(a.acknowledged_ts)}`);
    if (a.note) parts.push(`note: ${a.note}`);
    if (a.cleared_ts) parts.push(`cleared ${fmtTime(a.cleared_ts)}`);
    li.append(head, el("div", parts.filter(Boolean).join(" · "), "meta"));
    if (a.state === "raised" && canAck) {
      const form = el("div", null, "ack");
      const note = el("input");
      note.type = "text";
      note.maxLength = 500;
      note.placeholder = "note (optional)";
      note.setAttribute("aria-label", "note with the acknowledgement (optional)");
      const b = el("button", "Acknowledge");
      b.type = "button";
      b.addEventListener("click", () => acknowledge(a.alert_id, b, note.value));
      note.addEventListener("keydown", (e) => { if (e.key === "Enter") b.click(); });
      form.append(note, b);
      li.appendChild(form);
    }
    list.appendChild(li);
  }
  renderBanner(alerts);
  if (S.site) renderZones();
}

// A critical alert waiting for acknowledgement shows a banner and (unless muted) beeps once when it arrives.
function renderBanner(alerts) {
  const critical = alerts.filter((a) => a.severity === "critical" && a.state === "raised");
  const banner = $("banner");
  banner.hidden = !critical.length;
  if (!critical.length) return;
  const first = critical[0];
  $("banner-text").textContent = critical.length === 1 ? `Critical: ${first.message || subjectName(first.subject)}`
    : `${critical.length} critical alerts, e.g. ${first.message || subjectName(first.subject)}`;
  const fresh = critical.filter((a) => !S.beeped.has(a.alert_id + "/" + (a.occurrences || 1)));
  for (const a of fresh) S.beeped.add(a.alert_id + "/" + (a.occurrences || 1));
  if (fresh.length && localStorage.getItem(MUTE_KEY) !== "1") beep();
}

function beep() {
  try {
    const ctx = S.audio || (S.audio = new (window.AudioContext || window.webkitAudioContext)());
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.6);
  } catch (err) { console.warn("no sound", err); }
}

function renderMute() {
  const muted = localStorage.getItem(MUTE_KEY) === "1";
  $("mute-btn").textContent = muted ? "Sound off" : "Sound on";
  $("mute-btn").setAttribute("aria-pressed", String(muted));
}

async function acknowledge(id, button, note) {
  button.disabled = true;
  const text = (note || "").trim();
  const options = { method: "POST" };
  if (text) { options.body = JSON.stringify({ note: text }); options.headers = { "Content-Type": "application/json" }; }
  const resp = await api(`/api/alerts/${encodeURIComponent(id)}/acknowledge`, options);
  if (resp.ok || resp.status === 409) {
    const row = resp.ok ? await resp.json() : null;
    if (row) S.alerts.set(row.alert_id, row);
    else await loadAlerts();
    renderAlerts();
  } else {
    button.disabled = false;
    button.textContent = resp.status === 403 ? "operator token needed" : `failed (${resp.status})`;
  }
}

// An operator who sees the site empty tells the camera so: its latest density becomes the
// background subtracted from its counts (no picture is taken). The API refuses it while the
// counter or motion finds anyone in view and says why; a capture can be undone. Both are in
// the audit trail and the debrief.
function addCaptureButton(node, camId) {
  const b = el("button", "Site empty: capture background", "capture");
  b.type = "button";
  b.title = "Only while this camera sees nobody: its current density becomes the background it subtracts";
  const undo = el("button", "Undo capture", "undo-capture");
  undo.type = "button";
  undo.hidden = true;
  const note = el("span", "", "capture-note");
  const base = `/api/cameras/${encodeURIComponent(camId)}/background`;
  b.addEventListener("click", async () => {
    if (!window.confirm(`Camera ${camId}: is the site empty in its view right now?`)) return;
    b.disabled = true;
    const resp = await api(`${base}/capture`, { method: "POST" });
    const body = await resp.json().catch(() => ({}));
    b.textContent = resp.ok ? "background captured" : resp.status === 409 ? "capture refused"
      : `failed (${resp.status})`;
    note.textContent = resp.ok ? body.status || "" : body.detail || "";
    b.title = resp.ok ? body.status || b.title : body.detail || b.title;
    if (resp.ok) undo.hidden = false;
    b.disabled = false;
  });
  undo.addEventListener("click", async () => {
    if (!window.confirm(`Camera ${camId}: restore the background it used before the last capture?`)) return;
    undo.disabled = true;
    const resp = await api(`${base}/undo`, { method: "POST" });
    const body = await resp.json().catch(() => ({}));
    note.textContent = resp.ok ? `capture undone: ${body.status || ""}` : body.detail || `failed (${resp.status})`;
    b.textContent = "Site empty: capture background";
    undo.hidden = true;
    undo.disabled = false;
  });
  node.card.querySelector("figcaption").append(b, undo, note);
}

// Why a camera has no picture (the runner's note: still gathering frames, or what its last
// check found), shown in place of the picture.
function showBackgroundNote(camId, note) {
  const node = S.cameras[camId];
  if (node && !node.img && note) node.holder.firstChild.textContent = `No people-free background published: ${note}`;
}

function renderCameraHealth(cam) {
  const node = S.cameras[cam.id];
  if (!node) return;
  const h = cam.health;
  node.health.textContent = h ? `${h.status}${h.fps !== null ? ", " + num(h.fps) + " fps" : ""}` : "no health report";
  node.health.className = "health" + (h && h.status !== "up" ? " risk-critical" : "");
}

// ---- chart ---------------------------------------------------------------------------------
async function loadChart() {
  if (!S.selected) return;
  const span = Number($("chart-span").value);
  const end = Date.now() / 1000;
  const history = await getJSON(`/api/zones/${encodeURIComponent(S.selected)}/history?start=${end - span}&end=${end + 5}`);
  const zone = S.site.zones.find((z) => z.id === S.selected);
  CS.drawZoneChart($("chart"), history, zone, S.zones[S.selected]);
}

function selectZone(id) {
  S.selected = id;
  $("chart-zone").value = id;
  CS.selectMapZone(S.nodes, id);
  for (const tr of $("zones-table").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.zone === id);
  loadChart().catch(console.error);
}

// ---- data ----------------------------------------------------------------------------------
async function loadAlerts() {
  S.alerts = new Map((await getJSON("/api/alerts?limit=200")).map((a) => [a.alert_id, a]));
}

// The event debrief (crowdsafe report) of the last N hours, saved as one self-contained HTML file.
async function downloadReport(button) {
  const hours = Number(window.prompt("Report on the last how many hours?", "12"));
  if (!(hours > 0)) return;
  const end = Date.now() / 1000;
  button.disabled = true;
  button.textContent = "Report…";
  try {
    const resp = await api(`/api/report?start=${end - hours * 3600}&end=${end}`);
    if (!resp.ok) throw new Error(`report: HTTP ${resp.status}`);
    const url = URL.createObjectURL(await resp.blob());
    const a = el("a");
    a.href = url;
    a.download = `crowdsafe-report-${new Date(end * 1000).toISOString().slice(0, 16).replace(":", "")}.html`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } finally {
    button.disabled = false;
    button.textContent = "Report";
  }
}

// Admins re-read the site file after editing it (names, capacities, polygons): the API answers with
// what it now shows, or 422 with every problem of the file, which then changes nothing.
async function reloadSite(button) {
  button.disabled = true;
  try {
    const resp = await api("/api/site/reload", { method: "POST" });
    const body = await resp.json().catch(() => ({}));
    if (resp.ok) {
      button.textContent = `Site reloaded (${body.zones} zones)`;
      button.title = "";
      await loadSnapshot();
    } else {
      const problems = body.detail && body.detail.problems ? body.detail.problems : [body.detail || resp.status];
      button.textContent = `Reload refused (${resp.status})`;
      button.title = problems.join("\n");
    }
  } finally {
    button.disabled = false;
  }
}

async function loadBackground(camId) {
  const resp = await api(`/api/cameras/${encodeURIComponent(camId)}/background.jpg`);
  if (resp.ok) CS.setCameraBackground(S.cameras[camId], await resp.blob());
  else if (resp.status === 404) {
    const body = await resp.json().catch(() => ({}));
    showBackgroundNote(camId, (body.detail || "").replace(/^no background published: /, ""));
  }
}

async function loadSnapshot() {
  const [me, site, zones, lines, cameras] = await Promise.all(
    ["/api/me", "/api/site", "/api/zones", "/api/lines", "/api/cameras"].map(getJSON));
  S.role = me.role;
  $("who").textContent = `${me.name} (${me.role})`;
  $("report-btn").hidden = !(S.role === "operator" || S.role === "admin");
  $("reload-btn").hidden = S.role !== "admin";
  $("setup-link").hidden = S.role !== "admin";
  if (!S.site || JSON.stringify(S.site) !== JSON.stringify(site)) {
    S.site = site;
    $("site-name").textContent = site.name;
    document.title = `crowdsafe · ${site.name}`;
    S.nodes = CS.drawMap($("map"), site, selectZone);
    $("cameras").replaceChildren();
    S.cameras = {};
    for (const cam of site.cameras) {
      S.cameras[cam.id] = CS.drawCamera($("cameras"), cam);
      if (S.role === "operator" || S.role === "admin") addCaptureButton(S.cameras[cam.id], cam.id);
    }
    const sel = $("chart-zone");
    sel.replaceChildren(...site.zones.map((z) => { const o = el("option", z.name); o.value = z.id; return o; }));
    if (!S.selected && site.zones.length) S.selected = site.zones[0].id;
  }
  S.zones = Object.fromEntries(zones.filter((z) => z.reading).map((z) => [z.id, z.reading]));
  S.lines = Object.fromEntries(lines.filter((l) => l.reading).map((l) => [l.id, l.reading]));
  S.lineTotals = Object.fromEntries(lines.filter((l) => l.totals).map((l) => [l.id, { ...l.totals }]));
  await loadSparklines().catch(console.warn);
  await loadAlerts();
  renderLines();
  renderAlerts();
  for (const cam of cameras) {
    renderCameraHealth(cam);
    if (cam.has_background) loadBackground(cam.id).catch(console.error);
    else showBackgroundNote(cam.id, cam.background_note);
  }
  if (S.selected) selectZone(S.selected);
}

function onEvent(name, data) {
  if (name === "zone") {
    S.zones[data.zone_id] = data;
    renderZones();
    if (data.zone_id === S.selected) CS.extendZoneChart($("chart"), data);
  } else if (name === "line") {
    S.lines[data.line_id] = data;
    const t = S.lineTotals[data.line_id];
    if (t && data.ts >= t.since_ts) { t.in += data.in_count || 0; t.out += data.out_count || 0; }
    const spark = S.spark[data.line_id] || (S.spark[data.line_id] = []);
    spark.push(data.flow_pmm);
    if (spark.length > SPARK_POINTS) spark.shift();
    renderLines();
  } else if (name === "alert") {
    S.alerts.set(data.alert_id, data);
    renderAlerts();
  } else if (name === "camera") {
    renderCameraHealth({ id: data.camera_id, health: data });
  } else if (name === "overflow") {
    setConn(false, "catching up");
  }
}

async function live() {
  for (;;) {
    if (S.abort) S.abort.abort();
    S.abort = new AbortController();
    try {
      await loadSnapshot();
      setConn(true, "live");
      await CS.streamEvents("/api/events", S.token, onEvent, S.abort.signal);
      setConn(false, "reconnecting");
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err.status === 401 || err.message === "401") { setConn(false, "token needed"); return; }
      setConn(false, "reconnecting");
      console.warn(err);
    }
    await new Promise((r) => setTimeout(r, 3000));
  }
}

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString([], TIME_24H);
  for (const td of document.querySelectorAll("td[data-ts]")) {
    if (!td.dataset.ts) continue;
    const a = age(Number(td.dataset.ts));
    td.textContent = fmtAge(a);
    td.parentElement.classList.toggle("stale", a > STALE_S);
  }
}

function start() {
  if (!S.token) { askToken(); return; }
  live();
  clearInterval(S.chartTimer);
  S.chartTimer = setInterval(() => {
    loadChart().catch(console.error);
    for (const cam of S.site ? S.site.cameras : []) loadBackground(cam.id).catch(() => {});
  }, 60000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", saveToken);
  $("token-btn").addEventListener("click", () => askToken());
  $("report-btn").addEventListener("click", (e) => downloadReport(e.currentTarget).catch(console.error));
  $("reload-btn").addEventListener("click", (e) => reloadSite(e.currentTarget).catch(console.error));
  $("token-forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    S.token = null;
    if (S.abort) S.abort.abort();
    setConn(false, "not connected");
    $("who").textContent = "";
    $("token-error").textContent = "Token forgotten.";
  });
  $("chart-zone").addEventListener("change", (e) => selectZone(e.target.value));
  $("chart-span").addEventListener("change", () => loadChart().catch(console.error));
  $("mute-btn").addEventListener("click", () => {
    localStorage.setItem(MUTE_KEY, localStorage.getItem(MUTE_KEY) === "1" ? "0" : "1");
    renderMute();
  });
  renderMute();
  const legend = $("legend");
  legend.append(el("span", "Level of Service:"));
  for (const l of "ABCDEF") legend.appendChild(losBadge(l));
  legend.append(el("span", "A free flow … F jammed; number = people now; dashed = camera view; "
    + "pulsing outline = open alert"));
  setInterval(tick, 1000);
  start();
});
