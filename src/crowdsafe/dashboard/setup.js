// The Setup page (admin): calibrate a camera by clicking pairs, draw zones and gate lines on the
// ground plan (over a venue plan image if one is given), see them in every camera, and save into the
// site file through /api/setup (checked there like `site check`).
"use strict";

const TOKEN_KEY = "crowdsafe.token";
const NS = "http://www.w3.org/2000/svg";
// camera colours: none is the zones' blue, the gates' pink or the grids' green and orange
const COLOURS = ["#c39bff", "#f0f080", "#7fffd4", "#ff7b7b", "#b0b0b0", "#d2a679"];
const $ = (id) => document.getElementById(id);
const U = { token: localStorage.getItem(TOKEN_KEY), version: null, site: null, camera: null, size: [768, 576],
  pairs: [], pending: null, fit: null, zones: [], lines: [], drawing: [], fitSeq: 0, view: null,
  preview: null, previewSeq: 0, backgrounds: {}, underlay: null, scalePts: [] };

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
function snap(v) { return ($("snap").checked ? Math.round(v * 2) / 2 : round(v, 2)) || 0; }  // never -0
const pts = (list, flip = false) => list.map((p) => `${p[0]},${flip ? -p[1] : p[1]}`).join(" ");
const cameraColour = (id) => COLOURS[Math.max(0, (U.site?.cameras || []).findIndex((c) => c.id === id)) % COLOURS.length];

// -- the plan view: x to the right, y up (SVG y is -y); 4:3, zoomed and panned by the user -----------
function contentBounds() {
  const p = [...U.zones.flatMap((z) => z.polygon), ...U.lines.flatMap((l) => [l.a, l.b]),
    ...U.pairs.filter((q) => q.ground).map((q) => q.ground)];
  const u = U.underlay;
  if (u && u.natW) p.push([u.x, u.y], [u.x + u.natW * u.mpp, u.y - u.natH * u.mpp]);
  if (!p.length) return [-15, -10, 15, 10];
  return [Math.min(...p.map((q) => q[0])), Math.min(...p.map((q) => q[1])),
    Math.max(...p.map((q) => q[0])), Math.max(...p.map((q) => q[1]))];
}

function fitView() {
  const [x0, y0, x1, y1] = contentBounds();
  const w = Math.max(20, x1 - x0 + 6, (y1 - y0 + 6) * 4 / 3);
  U.view = { x0: (x0 + x1) / 2 - w / 2, y1: (y0 + y1) / 2 + w * 3 / 8, w };
  drawPlan();
}

function zoom(factor, at) {  // at: a plan point that stays under the cursor
  const v = U.view;
  const c = at || [v.x0 + v.w / 2, v.y1 - v.w * 3 / 8];
  const w = Math.min(2000, Math.max(2, v.w * factor));
  U.view = { x0: c[0] - (c[0] - v.x0) * w / v.w, y1: c[1] + (v.y1 - c[1]) * w / v.w, w };
  drawPlan();
}

function drawPlanGrid() {
  const { x0, y1, w } = U.view;
  const h = w * 3 / 4;
  const svg = $("plan-svg");
  svg.setAttribute("viewBox", `${x0} ${-y1} ${w} ${h}`);
  const g = $("plan-grid");
  g.textContent = "";
  const step = w > 150 ? 5 : 1;
  const fs = w / 70;
  for (let x = Math.ceil(x0 / step) * step; x <= x0 + w; x += step) {
    node("line", { x1: x, y1: -y1, x2: x, y2: -(y1 - h), class: x % 5 ? "grid" : "grid5" }, g);
    if (x % 5 === 0) node("text", { x: x + fs / 4, y: -(y1 - h) - fs / 3, class: "axis", "font-size": fs }, g, `${x}`);
  }
  for (let y = Math.ceil((y1 - h) / step) * step; y <= y1; y += step) {
    node("line", { x1: x0, y1: -y, x2: x0 + w, y2: -y, class: y % 5 ? "grid" : "grid5" }, g);
    if (y % 5 === 0) node("text", { x: x0 + fs / 4, y: -y - fs / 4, class: "axis", "font-size": fs }, g, `${y}`);
  }
}

function drawUnderlay() {
  const img = $("plan-img");
  const u = U.underlay;
  if (!u) { img.setAttribute("href", ""); img.setAttribute("width", 0); img.setAttribute("height", 0); return; }
  img.setAttribute("href", u.href);
  img.setAttribute("x", u.x); img.setAttribute("y", -u.y);
  img.setAttribute("width", u.natW * u.mpp); img.setAttribute("height", u.natH * u.mpp);
}

function inNormal(line) {  // the way an "in" crossing moves: the server's when it has one
  const p = (U.preview?.lines || []).find((l) => l.id === line.id);
  if (p) return p.in_normal;
  const [dx, dy] = [line.b[0] - line.a[0], line.b[1] - line.a[1]];
  const len = Math.hypot(dx, dy) || 1;
  const sign = line.positive === "right" ? -1 : 1;
  return [-dy / len * sign, dx / len * sign];
}

function drawPlan() {
  if (!U.view) { fitView(); return; }
  drawPlanGrid();
  drawUnderlay();
  const r = U.view.w / 180;  // handle radius: about 5 px on screen
  const fs = U.view.w / 55;
  const owned = $("plan-owned");
  owned.textContent = "";
  for (const cam of U.preview?.cameras || []) {
    const colour = cameraColour(cam.id);
    for (const ring of cam.owned) {
      node("polygon", { class: "owned-area", points: pts(ring, true), fill: colour, "fill-opacity": 0.08,
        stroke: colour, "data-camera": cam.id }, owned);
    }
  }
  const z = $("plan-zones");
  z.textContent = "";
  for (const zone of U.zones) {
    node("polygon", { class: "zone", points: pts(zone.polygon, true), "data-zone": zone.id }, z);
    const cx = zone.polygon.reduce((s, p) => s + p[0], 0) / zone.polygon.length;
    const cy = zone.polygon.reduce((s, p) => s + p[1], 0) / zone.polygon.length;
    node("text", { x: cx, y: -cy, class: "zone-label", "font-size": fs, "text-anchor": "middle" }, z, zone.id);
  }
  for (const line of U.lines) {
    const p = (U.preview?.lines || []).find((l) => l.id === line.id);
    if (p && p.passage) {
      node("line", { x1: p.passage[0][0], y1: -p.passage[0][1], x2: p.passage[1][0], y2: -p.passage[1][1],
        class: "passage", "data-passage": line.id }, z);
    }
    node("line", { x1: line.a[0], y1: -line.a[1], x2: line.b[0], y2: -line.b[1], class: "gate",
      "data-line": line.id }, z);
    const [nx, ny] = inNormal(line);
    const [mx, my] = [(line.a[0] + line.b[0]) / 2, (line.a[1] + line.b[1]) / 2];
    const len = Math.max(1.5, U.view.w / 25);
    node("line", { x1: mx, y1: -my, x2: mx + len * nx, y2: -(my + len * ny), class: "gate-in",
      "data-in": line.id }, z);
    node("text", { x: mx + 1.25 * len * nx, y: -(my + 1.25 * len * ny), class: "zone-label", "font-size": fs,
      "text-anchor": "middle" }, z, `in (${line.id})`);
  }
  const d = $("plan-draw");
  d.textContent = "";
  if (U.drawing.length) node("polyline", { class: "drawing", points: pts(U.drawing, true) }, d);
  for (const p of U.drawing) node("circle", { cx: p[0], cy: -p[1], r: r * 0.8, class: "corner" }, d);
  for (const p of U.scalePts) node("circle", { cx: p[0], cy: -p[1], r, class: "scale-pt" }, d);
  const h = $("plan-handles");
  h.textContent = "";
  if ($("mode").value === "zone" || $("mode").value === "line") {  // corners to drag (or to click on: shared corners)
    U.zones.forEach((zone) => zone.polygon.forEach((p, k) => node("circle",
      { cx: p[0], cy: -p[1], r, class: "corner", "data-zone": zone.id, "data-k": k }, h)));
    U.lines.forEach((line) => ["a", "b"].forEach((k) => node("circle",
      { cx: line[k][0], cy: -line[k][1], r, class: "corner", "data-line": line.id, "data-k": k }, h)));
  }
  const pp = $("plan-pts");
  pp.textContent = "";
  U.pairs.forEach((pair, i) => {
    if (!pair.ground) return;
    node("circle", { cx: pair.ground[0], cy: -pair.ground[1], r: r * 1.2, class: "plan-pt", "data-pair": i }, pp);
    node("text", { x: pair.ground[0] + 1.5 * r, y: -pair.ground[1] - r, class: "zone-label", "font-size": fs }, pp,
      String(i + 1));
  });
  drawTable();
}

// -- the picture: pairs, the fitted grids, zones projected ------------------------------------------
function runs(parent, list, cls, name, attrs = {}) {
  for (const run of list || []) node("polyline", { class: cls, points: pts(run), "data-outline": name, ...attrs }, parent);
}

function drawImage() {
  const ip = $("img-pts");
  ip.textContent = "";
  U.pairs.forEach((pair, i) => {
    const err = U.fit && U.fit.errors_m ? U.fit.errors_m[i] : null;
    node("circle", { cx: pair.image[0], cy: pair.image[1], r: 5, class: "img-pt", "data-pair": i }, ip);
    const left = pair.image[0] > U.size[0] - 90;  // near the right edge: label on the left, not cut off
    node("text", { x: pair.image[0] + (left ? -7 : 7), y: pair.image[1] - 5, class: "pt-label",
      "text-anchor": left ? "end" : "start" }, ip,
      `${i + 1}${err !== null && err !== undefined ? ` ${err.toFixed(2)} m` : ""}`);
  });
  const zg = $("img-zones");
  zg.textContent = "";
  if (U.fit && U.fit.floor_outlines) {
    const names = [...U.zones.map((z) => z.id), ...U.lines.map((l) => l.id)];
    const kinds = [...U.zones.map(() => "zone"), ...U.lines.map(() => "line")];
    U.fit.floor_outlines.forEach((r, k) => runs(zg, r, `zone-floor ${kinds[k]}-floor`, names[k]));
    U.fit.head_outlines.forEach((r, k) => runs(zg, r, `zone-head ${kinds[k]}-head`, names[k]));
    U.fit.floor_outlines.forEach((r, k) => {  // each name once, inside the picture, on its outline
      const inside = r.flat().filter((p) => p[0] > 20 && p[0] < U.size[0] - 60 && p[1] > 20 && p[1] < U.size[1] - 20);
      if (!inside.length) return;
      const [x, y] = inside[Math.floor(inside.length / 2)];
      node("text", { x, y, class: "pt-label", "data-name": names[k] }, zg, names[k]);
    });
  }
  const og = $("img-owned");
  og.textContent = "";
  const mine = (U.preview?.cameras || []).find((c) => c.id === U.camera?.id);
  if (mine && U.fit) {
    for (const [zid, item] of Object.entries(mine.zones)) {
      for (const ring of item.owned) for (const run of ring) {
        node("polygon", { class: "owned-zone", points: pts(run), fill: cameraColour(mine.id), "data-owned": zid }, og);
      }
    }
  }
  const g = $("img-grid");
  g.textContent = "";
  if (U.fit && U.fit.floor_grid) {
    for (const run of U.fit.head_grid) node("polyline", { class: "head", points: pts(run) }, g);
    for (const run of U.fit.floor_grid) node("polyline", { class: "floor", points: pts(run) }, g);
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

function ownersOf(kind, id) {  // "cam1 120 m², cam2 30 m²" from the preview
  if (!U.preview) return "";
  if (kind === "line") return (U.preview.lines.find((l) => l.id === id) || {}).camera || "no camera";
  const m2 = U.preview.zones[id] || {};
  const parts = Object.entries(m2).filter(([, a]) => a > 0).map(([c, a]) => `${c} ${Math.round(a)} m²`);
  return parts.length ? parts.join(", ") : "no camera";
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
      text.push(ownersOf(kind, item.id));
      for (const c of text) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
      tr.lastChild.className = "owners";
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
  schedulePreview();
}

// -- every camera: what the edited site does, from /api/setup/preview --------------------------------
let previewTimer = null;
function schedulePreview() { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 250); }

async function preview() {
  const seq = ++U.previewSeq;
  const state = $("preview-state");
  if (!U.fit) { state.textContent = "(waiting for this camera's calibration)"; return; }
  const resp = await api("/api/setup/preview", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ site: edited() }) });
  const body = await resp.json();
  if (seq !== U.previewSeq) return;
  if (!resp.ok) {
    const d = body.detail;
    state.textContent = "not checked yet: " + (d && d.problems ? d.problems.join("; ") : JSON.stringify(d));
    state.dataset.ok = "";
    return;
  }
  U.preview = body;
  state.textContent = "";
  state.dataset.ok = "yes";
  drawPlan(); drawImage(); await drawCameras();
}

async function background(id) {
  if (!(id in U.backgrounds)) {
    const resp = await api(`/api/cameras/${encodeURIComponent(id)}/background.jpg`);
    U.backgrounds[id] = resp.ok ? URL.createObjectURL(await resp.blob()) : null;
  }
  return U.backgrounds[id];
}

async function drawCameras() {
  const box = $("cams");
  box.textContent = "";
  const legend = $("legend");
  legend.textContent = "";
  for (const cam of U.preview?.cameras || []) {
    const colour = cameraColour(cam.id);
    const tag = document.createElement("span");
    tag.style.background = colour; tag.textContent = `${cam.id} counts ${Math.round(cam.owned_m2)} m²`;
    legend.appendChild(tag);
    const div = document.createElement("div");
    div.className = "cam" + (cam.id === U.camera.id ? " current" : "");
    div.dataset.camera = cam.id;
    div.style.borderColor = colour;
    const [w, h] = cam.image_size;
    const svg = node("svg", { viewBox: `0 0 ${w} ${h}` }, div);
    const href = await background(cam.id);
    if (href) node("image", { href, x: 0, y: 0, width: w, height: h }, svg);
    for (const [zid, item] of Object.entries(cam.zones)) {
      for (const ring of item.owned) for (const run of ring) {
        node("polygon", { class: "owned-zone", points: pts(run), fill: colour, "data-owned": zid }, svg);
      }
      runs(svg, item.floor, "zone-floor", zid);
      runs(svg, item.head, "zone-head", zid);
    }
    for (const [lid, item] of Object.entries(cam.lines)) {
      runs(svg, item.floor, "line-floor", lid);
      runs(svg, item.head, "line-head", lid);
    }
    const seen = Object.entries(cam.zones).filter(([, z]) => z.owned_m2 > 0).map(([zid, z]) => `${zid} ${Math.round(z.owned_m2)} m²`);
    const gates = U.preview.lines.filter((l) => l.camera === cam.id).map((l) => l.id);
    const cap = document.createElement("div");
    cap.textContent = `${cam.id}: counts ${seen.join(", ") || "no zone"}` + (gates.length ? `; measures ${gates.join(", ")}` : "");
    div.appendChild(cap);
    div.onclick = () => { if (cam.id !== U.camera.id) { $("camera").value = cam.id; selectCamera(cam.id); } };
    box.appendChild(div);
  }
}

// -- the picture: drag a pair's image point to correct it; the fit follows when it is dropped -------
let dragging = null;
$("img-svg").addEventListener("mousedown", (event) => {
  U.justDragged = false;  // a drag whose element was redrawn under it leaves no click to clear this
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
  if ($("mode").value !== "pairs") { say("to add a calibration pair, set the plan's mode to calibration pairs"); return; }
  const p = svgPoint($("img-svg"), event);
  U.pairs.push({ image: [round(p.x, 1), round(p.y, 1)], ground: null });
  U.pending = U.pairs.length - 1;
  say(`pair ${U.pairs.length}: now click its place on the plan, or type its metres in the table`);
  refit(); drawImage(); drawTable();
});

// -- the plan: click to place, drag a point or corner to move it, drag empty floor to pan -------------
let planDrag = null;
const planAt = (event) => { const p = svgPoint($("plan-svg"), event); return [p.x, -p.y]; };

function dragTarget(el) {  // what a mousedown on this element would move
  if (el.classList.contains("plan-pt")) return { pair: Number(el.dataset.pair) };
  if (el.classList.contains("corner") && el.dataset.zone !== undefined) return { zone: el.dataset.zone, k: Number(el.dataset.k) };
  if (el.classList.contains("corner") && el.dataset.line !== undefined) return { line: el.dataset.line, k: el.dataset.k };
  return null;
}

function moveTarget(t, at) {
  if (t.pair !== undefined) { U.pairs[t.pair].ground = at; U.pairs[t.pair].typed = at.slice(); }
  if (t.zone !== undefined) U.zones.find((z) => z.id === t.zone).polygon[t.k] = at;
  if (t.line !== undefined) U.lines.find((l) => l.id === t.line)[t.k] = at;
}

$("plan-svg").addEventListener("mousedown", (event) => {
  U.planJustDragged = false;
  if (event.button !== 0) return;
  document.activeElement?.blur();  // the plan takes the keys (Esc, Backspace) from a form field
  const target = $("mode").value.startsWith("underlay") ? null : dragTarget(event.target);
  planDrag = { target, start: [event.clientX, event.clientY], at: planAt(event), view: { ...U.view }, moved: false,
    underlay: $("mode").value === "underlay-move" && U.underlay ? { x: U.underlay.x, y: U.underlay.y } : null };
  event.preventDefault();
});

window.addEventListener("mousemove", (event) => {
  if (!planDrag) return;
  if (!planDrag.moved && Math.hypot(event.clientX - planDrag.start[0], event.clientY - planDrag.start[1]) < 4) return;
  planDrag.moved = true;
  if (planDrag.target) {
    const [x, y] = planAt(event);
    moveTarget(planDrag.target, [snap(x), snap(y)]);
  } else {
    const scale = planDrag.view.w / $("plan-svg").getBoundingClientRect().width;  // metres per screen px
    const dx = (event.clientX - planDrag.start[0]) * scale, dy = (event.clientY - planDrag.start[1]) * scale;
    if (planDrag.underlay) {
      U.underlay.x = round(planDrag.underlay.x + dx, 3); U.underlay.y = round(planDrag.underlay.y - dy, 3);
    } else {
      $("plan-svg").classList.add("panning");
      U.view = { ...planDrag.view, x0: planDrag.view.x0 - dx, y1: planDrag.view.y1 + dy };
    }
  }
  drawPlan();
});

window.addEventListener("mouseup", () => {
  if (!planDrag) return;
  const was = planDrag;
  planDrag = null;
  $("plan-svg").classList.remove("panning");
  if (!was.moved) return;
  U.planJustDragged = true;
  if (was.underlay) saveUnderlay();
  if (was.target) { refit(); drawPlan(); drawImage(); }
});

$("plan-svg").addEventListener("wheel", (event) => {
  event.preventDefault();
  zoom(Math.pow(1.2, Math.sign(event.deltaY)), planAt(event));
}, { passive: false });

$("plan-svg").addEventListener("mousemove", (event) => {
  const [x, y] = planAt(event);
  $("cursor").textContent = `x ${snap(x)} m, y ${snap(y)} m`;
});

$("plan-svg").addEventListener("click", (event) => {
  if (U.planJustDragged) { U.planJustDragged = false; return; }
  const [rx, ry] = planAt(event);
  const t = dragTarget(event.target);
  let at = [snap(rx), snap(ry)];
  if (t && t.zone !== undefined) at = U.zones.find((z) => z.id === t.zone).polygon[t.k].slice();  // a shared corner
  if (t && t.line !== undefined) at = U.lines.find((l) => l.id === t.line)[t.k].slice();
  const mode = $("mode").value;
  if (mode === "pairs") {
    if (t && t.pair !== undefined) return;  // a click on a placed point (a drag moves it)
    if (U.pending === null) { say("click the point on the picture first"); return; }
    U.pairs[U.pending].ground = at;
    U.pairs[U.pending].typed = at.slice();
    U.pending = null;
    say("");
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
  } else if (mode === "underlay-scale") {
    if (!U.underlay) { say("load a venue plan image first", true); return; }
    U.scalePts = [...U.scalePts, [round(rx, 3), round(ry, 3)]].slice(-2);
    underlayState();
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
function showForms() {
  const mode = $("mode").value;
  $("zone-form").hidden = mode !== "zone";
  $("line-form").hidden = mode !== "line";
  $("underlay-form").hidden = !mode.startsWith("underlay") && U.underlay !== null;
}
document.addEventListener("keydown", (event) => {  // while drawing: Esc drops it, Backspace its last corner
  if (!U.drawing.length || ["INPUT", "SELECT"].includes(document.activeElement?.tagName)) return;
  if (event.key === "Escape") U.drawing = [];
  else if (event.key === "Backspace") U.drawing.pop();
  else return;
  event.preventDefault();
  drawPlan();
});
$("mode").onchange = () => { U.drawing = []; U.scalePts = []; showForms(); drawPlan(); };
$("clear-pairs").onclick = () => { U.pairs = []; U.pending = null; refit(); drawImage(); drawPlan(); };
$("camera").onchange = () => selectCamera($("camera").value);
$("zoom-in").onclick = () => zoom(1 / 1.5);
$("zoom-out").onclick = () => zoom(1.5);
$("zoom-fit").onclick = fitView;

// -- the venue plan image: kept by the server (state dir), placed in metres --------------------------
async function saveUnderlay() {
  const u = U.underlay;
  $("underlay-state").dataset.saved = "";
  const resp = u ? await api("/api/setup/venue-plan", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ x: u.x, y: u.y, mpp: u.mpp }) })
    : await api("/api/setup/venue-plan", { method: "DELETE" });
  if (!resp.ok) say(`the venue plan's place was not kept (${resp.status})`, true);
  $("underlay-state").dataset.saved = resp.ok ? "yes" : "";
}

async function loadUnderlay() {
  U.underlay = null;
  const resp = await api("/api/setup/venue-plan");
  if (resp.ok) {
    const meta = await resp.json();
    const img = await api("/api/setup/venue-plan/image");
    if (img.ok) {
      U.underlay = { href: URL.createObjectURL(await img.blob()), natW: meta.width, natH: meta.height,
        x: meta.x, y: meta.y, mpp: meta.mpp };
    }
  }
  underlayState(); showForms();
}

function underlayState() {
  const u = U.underlay;
  const s = $("underlay-state");
  if (!u) { s.textContent = ""; return; }
  s.dataset.mpp = u.mpp;
  if (U.scalePts.length === 2) {
    const d = Math.hypot(U.scalePts[1][0] - U.scalePts[0][0], U.scalePts[1][1] - U.scalePts[0][1]);
    s.textContent = `the two points are ${d.toFixed(2)} m apart on the plan now: type their real distance, then Scale`;
  } else {
    s.textContent = `${(1 / u.mpp).toFixed(1)} plan pixels per metre; to scale it, choose "scale the venue plan" ` +
      `and click two points of known distance on it (${U.scalePts.length} of 2)`;
  }
}

$("underlay-file").onchange = async () => {
  const file = $("underlay-file").files[0];
  if (!file) return;
  const resp = await api("/api/setup/venue-plan/image", { method: "POST", headers: { "Content-Type": file.type },
    body: file });
  const meta = await resp.json();
  if (!resp.ok) {
    const d = meta.detail;
    say(`${file.name}: not used: ${Array.isArray(d) ? d.map((x) => x.msg).join("; ") : d}`, true);
    return;
  }
  const v = U.view;
  const mpp = v.w / 2 / meta.width;  // half the plan's width to start with, top-left near the view's
  U.underlay = { href: URL.createObjectURL(file), natW: meta.width, natH: meta.height,
    x: round(v.x0 + v.w / 10, 3), y: round(v.y1 - v.w / 10, 3), mpp };
  U.scalePts = [];
  await saveUnderlay(); underlayState(); drawPlan();
  $("mode").value = "underlay-scale"; showForms();
  say(`venue plan ${file.name} (${meta.width} x ${meta.height} px) under the grid: click two points of known distance on it`);
};

$("underlay-scale").onclick = () => {
  const u = U.underlay;
  const real = parseFloat($("underlay-dist").value);
  if (!u || U.scalePts.length !== 2) { say("click two points of known distance on the venue plan first", true); return; }
  if (!(real > 0)) { say("type the real distance between the two points, in metres", true); return; }
  const [p, q] = U.scalePts;
  const now = Math.hypot(q[0] - p[0], q[1] - p[1]);
  if (now <= 0) { say("the two points are the same point", true); return; }
  const mpp = u.mpp * real / now;  // the first point stays where it is on the plan
  const ix = (p[0] - u.x) / u.mpp, iy = (u.y - p[1]) / u.mpp;
  Object.assign(u, { mpp, x: round(p[0] - ix * mpp, 4), y: round(p[1] + iy * mpp, 4) });
  U.scalePts = [];
  saveUnderlay(); underlayState();
  say(`venue plan scaled: ${(1 / mpp).toFixed(2)} plan pixels per metre`);
  fitView();
};
$("underlay-remove").onclick = () => { U.underlay = null; U.scalePts = []; saveUnderlay(); underlayState(); showForms(); drawPlan(); };

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
    await load(U.camera.id, true);
  } else if (resp.status === 409) {
    $("save-state").textContent = "not saved: someone else saved first";
    say("changed since you loaded the page:\n" + (body.detail.changed || []).join("\n") + "\n" + body.detail.detail, true);
  } else {
    $("save-state").textContent = `not saved (${resp.status})`;
    const d = body.detail;
    say((d && d.problems ? d.problems : (Array.isArray(d) ? d.map((x) => `${(x.loc || []).join(".")}: ${x.msg}`) : [String(d)])).join("\n"), true);
  }
};

async function selectCamera(id, keepView = false) {
  U.camera = U.site.cameras.find((c) => c.id === id) || U.site.cameras[0];
  const cal = U.camera.calibration || {};
  U.size = cal.image_size || [768, 576];
  U.pairs = (cal.image_points || []).map((p, i) => ({ image: p, ground: (cal.ground_points || [])[i] || null }));
  U.pending = null;
  $("img-svg").setAttribute("viewBox", `0 0 ${U.size[0]} ${U.size[1]}`);
  $("bg").setAttribute("width", U.size[0]); $("bg").setAttribute("height", U.size[1]);
  const href = await background(U.camera.id);
  $("bg").setAttribute("href", href || "");
  if (!href) say(`camera ${U.camera.id}: no people-free background yet; capture one from the dashboard`, true);
  if (!keepView) U.view = null;
  await refit();
  drawPlan(); drawImage();
}

async function load(cameraId, keepView = false) {
  const resp = await api("/api/setup/site");
  if (!resp.ok) { say(resp.status === 403 ? "The Setup page is for admin tokens only." : `cannot load the site (${resp.status})`, true); return; }
  const got = await resp.json();
  U.version = got.version; U.site = got.site;
  U.zones = JSON.parse(JSON.stringify(got.site.zones || []));
  U.lines = JSON.parse(JSON.stringify(got.site.lines || []));
  await loadUnderlay();
  const sel = $("camera");
  sel.textContent = "";
  for (const c of got.site.cameras || []) { const o = document.createElement("option"); o.value = o.textContent = c.id; sel.appendChild(o); }
  if (cameraId) sel.value = cameraId;
  document.body.dataset.ready = "yes";
  await selectCamera(sel.value, keepView);
}

(async function start() {
  showForms();
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
