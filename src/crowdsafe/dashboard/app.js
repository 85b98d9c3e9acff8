// Dashboard state: snapshot from the REST API, then live updates over the event stream.
"use strict";
window.CS = window.CS || {};

const TOKEN_KEY = "crowdsafe.token";
const STALE_S = 30;
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
  zones: {}, lines: {}, alerts: new Map(), selected: null, abort: null, chartTimer: null };

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
const fmtTime = (ts) => new Date(ts * 1000).toLocaleTimeString();
const num = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

function losBadge(los) {
  return el("span", los || "–", "los " + (los ? "los-" + los : "los-none"));
}

function renderZones() {
  const body = $("zones-table").tBodies[0];
  body.replaceChildren();
  for (const zone of S.site.zones) {
    const r = S.zones[zone.id];
    const tr = el("tr", null, "zone-row" + (zone.id === S.selected ? " selected" : ""));
    tr.dataset.zone = zone.id;
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
    const seen = el("td", r && r.coverage_pct !== null ? `${Math.round(r.coverage_pct)} %` : "–");
    const ageCell = el("td", r ? fmtAge(age(r.ts)) : "–");
    ageCell.dataset.ts = r ? r.ts : "";
    tr.append(name, losCell, count, occ, el("td", r ? num(r.density, 2) : "–"), risk, seen, ageCell);
    if (r && age(r.ts) > STALE_S) tr.classList.add("stale");
    body.appendChild(tr);
    CS.updateMapZone(S.nodes, zone.id, r);
    for (const cam of Object.values(S.cameras)) CS.updateCameraZone(cam, zone.id, r);
  }
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
  for (const line of S.site.lines) {
    const r = S.lines[line.id];
    const tr = el("tr");
    const ageCell = el("td", r ? fmtAge(age(r.ts)) : "–");
    ageCell.dataset.ts = r ? r.ts : "";
    tr.append(el("td", line.name), el("td", r ? num(r.in_count) : "–"), el("td", r ? num(r.out_count) : "–"),
      el("td", r ? num(r.flow_pmm) : "–"), ageCell);
    body.appendChild(tr);
    CS.updateMapLine(S.nodes, line.id, r);
  }
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren();
  const alerts = [...S.alerts.values()].sort((a, b) => (a.state === "cleared") - (b.state === "cleared")
    || b.raised_ts - a.raised_ts).slice(0, 100);
  const open = alerts.filter((a) => a.state === "raised").length;
  $("alerts-summary").textContent = `${open} waiting for acknowledgement`;
  if (!alerts.length) list.appendChild(el("li", "no alerts", "empty"));
  const canAck = S.role === "operator" || S.role === "admin";
  for (const a of alerts) {
    const li = el("li", null, `${a.severity} ${a.state}`);
    li.dataset.alert = a.alert_id;
    const head = el("div");
    head.append(el("strong", `${a.subject} · ${a.rule.replaceAll("_", " ")}`), document.createTextNode(" "),
      el("span", a.state, "state"));
    let meta = `${a.message || ""} · ${a.severity} · raised ${fmtTime(a.raised_ts)}`;
    if (a.acknowledged_ts) meta += ` · acknowledged by ${a.acknowledged_by || "?"} ${fmtTime(a.acknowledged_ts)}`;
    if (a.cleared_ts) meta += ` · cleared ${fmtTime(a.cleared_ts)}`;
    li.append(head, el("div", meta, "meta"));
    if (a.state === "raised" && canAck) {
      const b = el("button", "Acknowledge");
      b.type = "button";
      b.addEventListener("click", () => acknowledge(a.alert_id, b));
      li.appendChild(b);
    }
    list.appendChild(li);
  }
}

async function acknowledge(id, button) {
  button.disabled = true;
  const resp = await api(`/api/alerts/${encodeURIComponent(id)}/acknowledge`, { method: "POST" });
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

async function loadBackground(camId) {
  const resp = await api(`/api/cameras/${encodeURIComponent(camId)}/background.jpg`);
  if (resp.ok) CS.setCameraBackground(S.cameras[camId], await resp.blob());
}

async function loadSnapshot() {
  const [me, site, zones, lines, cameras] = await Promise.all(
    ["/api/me", "/api/site", "/api/zones", "/api/lines", "/api/cameras"].map(getJSON));
  S.role = me.role;
  $("who").textContent = `${me.name} (${me.role})`;
  $("report-btn").hidden = !(S.role === "operator" || S.role === "admin");
  if (!S.site || JSON.stringify(S.site) !== JSON.stringify(site)) {
    S.site = site;
    $("site-name").textContent = site.name;
    document.title = `crowdsafe · ${site.name}`;
    S.nodes = CS.drawMap($("map"), site, selectZone);
    $("cameras").replaceChildren();
    S.cameras = {};
    for (const cam of site.cameras) S.cameras[cam.id] = CS.drawCamera($("cameras"), cam);
    const sel = $("chart-zone");
    sel.replaceChildren(...site.zones.map((z) => { const o = el("option", z.name); o.value = z.id; return o; }));
    if (!S.selected && site.zones.length) S.selected = site.zones[0].id;
  }
  S.zones = Object.fromEntries(zones.filter((z) => z.reading).map((z) => [z.id, z.reading]));
  S.lines = Object.fromEntries(lines.filter((l) => l.reading).map((l) => [l.id, l.reading]));
  await loadAlerts();
  renderZones();
  renderLines();
  renderAlerts();
  for (const cam of cameras) {
    renderCameraHealth(cam);
    if (cam.has_background) loadBackground(cam.id).catch(console.error);
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
  $("clock").textContent = new Date().toLocaleTimeString();
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
  const legend = $("legend");
  legend.append(el("span", "Level of Service:"));
  for (const l of "ABCDEF") legend.appendChild(losBadge(l));
  legend.append(el("span", "A free flow … F jammed; number = people now; dashed = camera view"));
  setInterval(tick, 1000);
  start();
});
