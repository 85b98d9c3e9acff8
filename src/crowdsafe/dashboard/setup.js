// The Setup page (admin): calibrate a camera by clicking pairs, draw zones and gate lines on the
// ground plan, and save into the site file through /api/setup (checked there like `site check`).
"use strict";

const TOKEN_KEY = "crowdsafe.token";
const NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const U = { token: localStorage.getItem(TOKEN_KEY), version: null, site: null, camera: null, size: [768, 576],
  pairs: [], pending: null, fit: null, zones: [], lines: [], drawing: [], fitSeq: 0 };

function say(text, error = false) { $("messages").textContent = text; $("messages").className = error ? "error" : ""; }

async function api(path, options = {}) {
  return fetch(path, { ...options, cache: "no-store",
    headers: { ...(options.headers || {}), Authorization: "Bearer " + U.token } });
}

function node(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function svgPoint(svg, event) {
  const p = svg.createSVGPoint();
  p.x = event.clientX; p.y = event.clientY;
  return p.matrixTransform(svg.getScreenCTM().inverse());
}

const round = (v, d = 3) => Math.round(v * 10 ** d) / 10 ** d;
function snap(v) { return $("snap").checked ? Math.round(v * 2) / 2 : round(v, 2); }

// -- the plan: x to the right, y up (SVG y is -y) --------------------------------------------------
function planExtent() {
  const pts = [...U.zones.flatMap((z) => z.polygon), ...U.lines.flatMap((l) => [l.a, l.b]),
    ...U.pairs.filter((p) => p.ground).map((p) => p.ground)];
  let [x0, x1, y0, y1] = [-10, 10, -10, 10];
  if (pts.length) {
    x0 = Math.min(...pts.map((p) => p[0])) - 5; x1 = Math.max(...pts.map((p) => p[0])) + 5;
    y0 = Math.min(...pts.map((p) => p[1])) - 5; y1 = Math.max(...pts.map((p) => p[1])) + 5;
  }
  const e = [Math.floor(x0), Math.ceil(x1), Math.floor(y0), Math.ceil(y1)];
  if (U.extent) {  // grows only: the plan does not jump under the mouse while drawing
    return [Math.min(e[0], U.extent[0]), Math.max(e[1], U.extent[1]), Math.min(e[2], U.extent[2]), Math.max(e[3], U.extent[3])];
  }
  return e;
}

function drawPlanGrid() {
  const [x0, x1, y0, y1] = U.extent;
  const svg = $("plan-svg");
  svg.setAttribute("viewBox", `${x0} ${-y1} ${x1 - x0} ${y1 - y0}`);
  const g = $("plan-grid");
  g.textContent = "";
  for (let x = x0; x <= x1; x++) node("line", { x1: x, y1: -y0, x2: x, y2: -y1, class: x % 5 ? "grid" : "grid5" }, g);
  for (let y = y0; y <= y1; y++) node("line", { x1: x0, y1: -y, x2: x1, y2: -y, class: y % 5 ? "grid" : "grid5" }, g);
}

function drawPlan() {
  const grown = planExtent();
  if (!U.extent || grown.some((v, i) => v !== U.extent[i])) { U.extent = grown; drawPlanGrid(); }
  const z = $("plan-zones");
  z.textContent = "";
  for (const zone of U.zones) {
    node("polygon", { class: "zone", points: zone.polygon.map((p) => `${p[0]},${-p[1]}`).join(" "),
      "data-zone": zone.id }, z);
    const cx = zone.polygon.reduce((s, p) => s + p[0], 0) / zone.polygon.length;
    const cy = zone.polygon.reduce((s, p) => s + p[1], 0) / zone.polygon.length;
    node("text", { x: cx, y: -cy, class: "zone-label" }, z, zone.id);
  }
  for (const line of U.lines) {
    node("line", { x1: line.a[0], y1: -line.a[1], x2: line.b[0], y2: -line.b[1], class: "gate",
      "data-line": line.id }, z);
    const [dx, dy] = [line.b[0] - line.a[0], line.b[1] - line.a[1]];
    const len = Math.hypot(dx, dy) || 1;
    const sign = line.positive === "right" ? -1 : 1;
    const [nx, ny] = [-dy / len * sign, dx / len * sign];  // the "in" direction: the left normal
    const [mx, my] = [(line.a[0] + line.b[0]) / 2, (line.a[1] + line.b[1]) / 2];
    node("line", { x1: mx, y1: -my, x2: mx + 2 * nx, y2: -(my + 2 * ny), class: "gate-in" }, z);
    node("text", { x: mx + 2.3 * nx, y: -(my + 2.3 * ny), class: "zone-label" }, z, "in");
  }
  const d = $("plan-draw");
  d.textContent = "";
  if (U.drawing.length) {
    node("polyline", { class: "drawing", points: U.drawing.map((p) => `${p[0]},${-p[1]}`).join(" ") }, d);
  }
  const pts = $("plan-pts");
  pts.textContent = "";
  U.pairs.forEach((pair, i) => {
    if (!pair.ground) return;
    node("circle", { cx: pair.ground[0], cy: -pair.ground[1], r: 0.3, class: "plan-pt" }, pts);
    node("text", { x: pair.ground[0] + 0.4, y: -pair.ground[1], class: "zone-label" }, pts, String(i + 1));
  });
  drawTable();
}

// -- the picture: pairs, the fitted grids, zones projected ------------------------------------------
function drawImage() {
  const pts = $("img-pts");
  pts.textContent = "";
  U.pairs.forEach((pair, i) => {
    const err = U.fit && U.fit.errors_m ? U.fit.errors_m[i] : null;
    node("circle", { cx: pair.image[0], cy: pair.image[1], r: 5, class: "img-pt", "data-pair": i }, pts);
    node("text", { x: pair.image[0] + 7, y: pair.image[1] - 5, class: "pt-label" }, pts,
      `${i + 1}${err !== null && err !== undefined ? ` ${err.toFixed(2)} m` : ""}`);
  });
  const zg = $("img-zones");
  zg.textContent = "";
  if (U.fit && U.fit.floor_outlines) {
    const names = [...U.zones.map((z) => z.id), ...U.lines.map((l) => l.id)];
    U.fit.floor_outlines.forEach((runs, k) => runs.forEach((run) => node("polyline",
      { class: "zone-floor", points: run.map((p) => p.join(",")).join(" "), "data-outline": names[k] }, zg)));
    U.fit.head_outlines.forEach((runs, k) => runs.forEach((run) => node("polyline",
      { class: "zone-head", points: run.map((p) => p.join(",")).join(" "), "data-outline": names[k] }, zg)));
  }
  const g = $("img-grid");
  g.textContent = "";
  if (U.fit && U.fit.floor_grid) {
    for (const run of U.fit.head_grid) node("polyline", { class: "head", points: run.map((p) => p.join(",")).join(" ") }, g);
    for (const run of U.fit.floor_grid) node("polyline", { class: "floor", points: run.map((p) => p.join(",")).join(" ") }, g);
  }
}

function errorCell(td, err) {
  td.textContent = err === null || err === undefined ? "" : err.toFixed(3);
  td.className = "error" + (err === null || err === undefined ? "" : err > 0.5 ? " bad" : " ok");
}

function drawTable() {
  const body = $("pairs").querySelector("tbody");
  if (body.rows.length === U.pairs.length && U.pairs.every((p, i) => body.rows[i].dataset.image === String(p.image))) {
    // same pairs: update in place, so a field being typed in is never replaced under the cursor
    U.pairs.forEach((pair, i) => {
      const tr = body.rows[i];
      errorCell(tr.querySelector("td.error"), U.fit && U.fit.errors_m ? U.fit.errors_m[i] : null);
      [".ground-x", ".ground-y"].forEach((sel, k) => {
        const input = tr.querySelector(sel);
        if (document.activeElement !== input && pair.ground) input.value = pair.ground[k];
      });
    });
    drawZoneTable();
    return;
  }
  body.textContent = "";
  U.pairs.forEach((pair, i) => {
    const tr = document.createElement("tr");
    tr.dataset.pair = i;
    tr.dataset.image = String(pair.image);
    const err = U.fit && U.fit.errors_m ? U.fit.errors_m[i] : null;
    const cells = [String(i + 1), round(pair.image[0], 1), round(pair.image[1], 1)];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    for (const k of [0, 1]) {
      const td = document.createElement("td");
      const input = document.createElement("input");
      input.type = "number"; input.step = "0.001"; input.className = `ground-${k ? "y" : "x"}`;
      input.value = pair.ground ? pair.ground[k] : ((pair.typed || [])[k] ?? "");
      input.addEventListener("change", () => {
        pair.typed = pair.ground ? pair.ground.slice() : (pair.typed || [null, null]);
        pair.typed[k] = parseFloat(input.value);
        const [x, y] = pair.typed;
        pair.ground = Number.isFinite(x) && Number.isFinite(y) ? [x, y] : null;
        if (pair.ground && U.pending === i) U.pending = null;
        refit(); drawPlan();
      });
      td.appendChild(input); tr.appendChild(td);
    }
    const e = document.createElement("td");
    errorCell(e, err);
    tr.appendChild(e);
    const del = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button"; b.textContent = "remove";
    b.onclick = () => { U.pairs.splice(i, 1); U.pending = null; refit(); drawPlan(); drawImage(); };
    del.appendChild(b); tr.appendChild(del);
    body.appendChild(tr);
  });
  drawZoneTable();
}

function drawZoneTable() {
  const zb = $("zones").querySelector("tbody");
  zb.textContent = "";
  for (const [kind, list] of [["zone", U.zones], ["line", U.lines]]) {
    list.forEach((item, i) => {
      const tr = document.createElement("tr");
      tr.dataset[kind] = item.id;
      const text = kind === "zone" ? [item.id, item.type, item.capacity ?? "", item.polygon.length]
        : [item.id, "gate line", "", 2];
      for (const c of text) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "delete"; b.className = "delete";
      b.onclick = () => { list.splice(i, 1); drawPlan(); refit(); };
      td.appendChild(b); tr.appendChild(td);
      zb.appendChild(tr);
    });
  }
}

async function refit() {
  const done = U.pairs.filter((p) => p.ground);
  const seq = ++U.fitSeq;
  if (done.length < 4 || done.length !== U.pairs.length) {
    U.fit = null;
    $("fit-state").textContent = done.length < 4 ? `${done.length} of at least 4 pairs` : "a pair has no ground point yet";
    $("fit-state").dataset.rms = "";
    drawImage(); drawTable();
    return;
  }
  const cal = (U.camera && U.camera.calibration) || {};
  const body = { image_points: done.map((p) => p.image), ground_points: done.map((p) => p.ground), image_size: U.size };
  if (cal.focal_px) body.focal_px = cal.focal_px;
  if (cal.principal_point) body.principal_point = cal.principal_point;
  body.outlines = [...U.zones.map((z) => z.polygon), ...U.lines.map((l) => [l.a, l.b])];
  const resp = await api("/api/setup/fit", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  const fit = await resp.json();
  if (seq !== U.fitSeq) return;  // a newer fit is on its way
  if (!resp.ok) {
    U.fit = null;
    $("fit-state").textContent = "no fit: " + (fit.detail || []).map((d) => d.msg || d).join("; ");
    $("fit-state").dataset.rms = "";
  } else {
    U.fit = fit;
    $("fit-state").textContent = `fit: RMS ${fit.rms_m.toFixed(3)} m, max ${fit.max_m.toFixed(3)} m` +
      (fit.camera_height_m ? `, camera about ${fit.camera_height_m} m up` : "");
    $("fit-state").dataset.rms = fit.rms_m;
  }
  drawImage(); drawTable();
}

// -- clicks ------------------------------------------------------------------------------------------
// drag a pair's image point to correct it; the fit follows when it is dropped
let dragging = null;
$("img-svg").addEventListener("mousedown", (event) => {
  if (event.button !== 0 || !event.target.classList.contains("img-pt")) return;
  dragging = { i: Number(event.target.dataset.pair), moved: false };
  event.preventDefault();
});
window.addEventListener("mousemove", (event) => {
  if (!dragging) return;
  const p = svgPoint($("img-svg"), event);
  U.pairs[dragging.i].image = [round(p.x, 1), round(p.y, 1)];
  dragging.moved = true;
  drawImage();
});
window.addEventListener("mouseup", () => {
  if (!dragging) return;
  U.justDragged = dragging.moved;
  dragging = null;
  drawTable();
  refit();
});

$("img-svg").addEventListener("click", (event) => {
  if (U.justDragged || event.target.classList.contains("img-pt")) { U.justDragged = false; return; }
  if ($("mode").value !== "pairs") return;
  const p = svgPoint($("img-svg"), event);
  U.pairs.push({ image: [round(p.x, 1), round(p.y, 1)], ground: null });
  U.pending = U.pairs.length - 1;
  say(`pair ${U.pairs.length}: now click its place on the plan, or type its metres in the table`);
  refit(); drawImage(); drawTable();
});

$("plan-svg").addEventListener("mousemove", (event) => {
  const p = svgPoint($("plan-svg"), event);
  $("cursor").textContent = `x ${snap(p.x)} m, y ${snap(-p.y)} m`;
});

$("plan-svg").addEventListener("click", (event) => {
  const p = svgPoint($("plan-svg"), event);
  const at = [snap(p.x), snap(-p.y)];
  const mode = $("mode").value;
  if (mode === "pairs") {
    if (U.pending === null) { say("click the point on the picture first"); return; }
    U.pairs[U.pending].ground = at;
    U.pairs[U.pending].typed = at.slice();
    U.pending = null;
    refit();
  } else if (mode === "zone") {
    U.drawing.push(at);
  } else if (mode === "line") {
    U.drawing.push(at);
    if (U.drawing.length === 2) {
      const id = $("line-id").value.trim() || `line${U.lines.length + 1}`;
      const line = { id, a: U.drawing[0], b: U.drawing[1], positive: $("line-positive").value };
      if ($("line-name").value.trim()) line.name = $("line-name").value.trim();
      const width = parseFloat($("line-width").value);
      if (Number.isFinite(width) && width > 0) line.width_m = width;
      U.lines = U.lines.filter((l) => l.id !== id);
      U.lines.push(line);
      U.drawing = [];
      say(`line ${id} drawn`);
      refit();
    }
  }
  drawPlan();
});

$("zone-done").onclick = () => {
  if (U.drawing.length < 3) { say("a zone needs at least 3 corners on the plan", true); return; }
  const id = $("zone-id").value.trim() || `zone${U.zones.length + 1}`;
  const zone = { id, type: $("zone-type").value, polygon: U.drawing };
  if ($("zone-name").value.trim()) zone.name = $("zone-name").value.trim();
  const cap = parseInt($("zone-capacity").value, 10);
  if (Number.isFinite(cap)) zone.capacity = cap;
  const old = U.zones.find((z) => z.id === id);
  if (old) Object.assign(old, zone); else U.zones.push(zone);
  U.drawing = [];
  say(`zone ${id} drawn`);
  drawPlan();
  refit();
};
$("mode").onchange = () => { U.drawing = []; drawPlan(); };
$("clear-pairs").onclick = () => { U.pairs = []; U.pending = null; refit(); drawImage(); drawPlan(); };
$("camera").onchange = () => selectCamera($("camera").value);

// -- load and save -------------------------------------------------------------------------------------
function keepZone(z) {  // the page's zone with the file's other keys (exits, los_profile) kept
  const old = (U.site.zones || []).find((o) => o.id === z.id) || {};
  const out = { ...old, ...z };
  if (!("name" in z)) delete out.name;
  if (!("capacity" in z)) delete out.capacity;
  return out;
}

function edited() {
  const site = JSON.parse(JSON.stringify(U.site));
  const cam = site.cameras.find((c) => c.id === U.camera.id);
  cam.calibration = { ...(cam.calibration || {}), image_points: U.pairs.map((p) => p.image),
    ground_points: U.pairs.map((p) => p.ground), image_size: U.size };
  site.zones = U.zones.map(keepZone);
  site.lines = U.lines.map((l) => ({ ...((U.site.lines || []).find((o) => o.id === l.id) || {}), ...l }));
  return site;
}

$("save").onclick = async () => {
  if (U.pairs.some((p) => !p.ground)) { say("every pair needs its ground point before saving", true); return; }
  $("save-state").textContent = "saving...";
  const resp = await api("/api/setup/site", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ version: U.version, site: edited() }) });
  const body = await resp.json();
  if (resp.ok) {
    $("save-state").textContent = body.saved ? `saved (backup ${body.backup}); the running site reloaded` : "no change";
    $("save-state").dataset.saved = "yes";
    say(body.changed && body.changed.length ? "changed:\n" + body.changed.join("\n") : "");
    await load(U.camera.id);
  } else if (resp.status === 409) {
    $("save-state").textContent = "not saved: someone else saved first";
    say("changed since you loaded the page:\n" + (body.detail.changed || []).join("\n") + "\n" + body.detail.detail, true);
  } else {
    $("save-state").textContent = `not saved (${resp.status})`;
    const d = body.detail;
    say((d && d.problems ? d.problems : (Array.isArray(d) ? d.map((x) => `${(x.loc || []).join(".")}: ${x.msg}`) : [String(d)])).join("\n"), true);
  }
};

async function selectCamera(id) {
  U.camera = U.site.cameras.find((c) => c.id === id) || U.site.cameras[0];
  const cal = U.camera.calibration || {};
  U.size = cal.image_size || [768, 576];
  U.pairs = (cal.image_points || []).map((p, i) => ({ image: p, ground: (cal.ground_points || [])[i] || null }));
  for (const id2 of ["img-svg"]) $(id2).setAttribute("viewBox", `0 0 ${U.size[0]} ${U.size[1]}`);
  $("bg").setAttribute("width", U.size[0]); $("bg").setAttribute("height", U.size[1]);
  const resp = await api(`/api/cameras/${encodeURIComponent(U.camera.id)}/background.jpg`);
  if (resp.ok) $("bg").setAttribute("href", URL.createObjectURL(await resp.blob()));
  else say(`camera ${U.camera.id}: no people-free background yet (${resp.status}); capture one from the dashboard`, true);
  U.extent = null;
  await refit();
  drawPlan(); drawImage();
}

async function load(cameraId) {
  const resp = await api("/api/setup/site");
  if (!resp.ok) { say(resp.status === 403 ? "The Setup page is for admin tokens only." : `cannot load the site (${resp.status})`, true); return; }
  const got = await resp.json();
  U.version = got.version; U.site = got.site;
  U.zones = JSON.parse(JSON.stringify(got.site.zones || []));
  U.lines = JSON.parse(JSON.stringify(got.site.lines || []));
  const sel = $("camera");
  sel.textContent = "";
  for (const c of got.site.cameras || []) { const o = document.createElement("option"); o.value = o.textContent = c.id; sel.appendChild(o); }
  if (cameraId) sel.value = cameraId;
  document.body.dataset.ready = "yes";
  await selectCamera(sel.value);
}

(async function start() {
  if (!U.token) {
    U.token = prompt("Admin token") || "";
    localStorage.setItem(TOKEN_KEY, U.token);
  }
  const me = await api("/api/me");
  if (!me.ok) { say("Token not accepted; log in on the dashboard first.", true); return; }
  const who = await me.json();
  $("who").textContent = `${who.name} (${who.role})`;
  if (who.role !== "admin") { say("The Setup page is for admin tokens only.", true); return; }
  await load(null);
})();
