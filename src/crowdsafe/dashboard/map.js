// The site map (SVG in ground metres, y up) and the camera views (SVG over the background, pixels).
"use strict";
window.CS = window.CS || {};

const SVG_NS = "http://www.w3.org/2000/svg";
CS.LOS_COLOURS = { A: "#1a9850", B: "#91cf60", C: "#d9ef8b", D: "#fee08b", E: "#fc8d59", F: "#d73027" };
CS.losColour = (los) => CS.LOS_COLOURS[los] || "#56606b";

CS.svg = function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
};

const pts = (ring, flip) => ring.map(([x, y]) => `${x},${flip ? -y : y}`).join(" ");

CS.drawMap = function drawMap(svgEl, site, onSelect) {
  svgEl.replaceChildren();
  const [minx, miny, maxx, maxy] = site.bounds;
  const extent = Math.max(maxx - minx, maxy - miny);
  svgEl.setAttribute("viewBox", `${minx} ${-maxy} ${maxx - minx} ${maxy - miny}`);
  svgEl.setAttribute("preserveAspectRatio", "xMidYMid meet");
  const font = extent / 28;
  const nodes = {};
  for (const cam of site.cameras) {
    for (const ring of cam.footprint) {
      const fp = CS.svg("polygon", { points: pts(ring, true), class: "footprint" }, svgEl);
      CS.svg("title", {}, fp).textContent = `camera ${cam.id} sees this floor`;
    }
  }
  for (const zone of site.zones) {
    const poly = CS.svg("polygon", { points: pts(zone.polygon, true), class: "zone", fill: CS.losColour(null),
      "data-zone": zone.id }, svgEl);
    poly.addEventListener("click", () => onSelect(zone.id));
    const title = CS.svg("title", {}, poly);
    title.textContent = zone.name;
    const [cx, cy] = zone.centroid;
    const letter = CS.svg("text", { x: cx, y: -cy - font * 0.6, class: "los-letter", "font-size": font * 2,
      "data-zone-los": zone.id }, svgEl);
    letter.textContent = "–";
    const count = CS.svg("text", { x: cx, y: -cy + font * 0.9, "font-size": font, "data-zone-count": zone.id }, svgEl);
    count.textContent = zone.name;
    const name = CS.svg("text", { x: cx, y: -cy + font * 2.1, "font-size": font * 0.75 }, svgEl);
    name.textContent = zone.name;
    nodes[zone.id] = { poly, letter, count, zone };
  }
  const lineNodes = {};
  for (const line of site.lines) {
    const [ax, ay] = line.a, [bx, by] = line.b;
    CS.svg("line", { x1: ax, y1: -ay, x2: bx, y2: -by, class: "gate" }, svgEl);
    const mx = (ax + bx) / 2, my = (ay + by) / 2, [nx, ny] = line.in_normal, s = font * 1.2;
    // arrow pointing the way "in" goes
    const tip = [mx + nx * s, -(my + ny * s)], l = [mx - ny * s * 0.4, -(my + nx * s * 0.4)];
    const r = [mx + ny * s * 0.4, -(my - nx * s * 0.4)];
    CS.svg("polygon", { points: `${tip} ${l} ${r}`, class: "gate-arrow" }, svgEl);
    const label = CS.svg("text", { x: mx - nx * font * 1.3, y: -(my - ny * font * 1.3), "font-size": font * 0.8 },
      svgEl);
    label.textContent = line.name;
    lineNodes[line.id] = { label, line };
  }
  return { zones: nodes, lines: lineNodes };
};

// ``severity``: the worst open alert of the zone (critical, warning, info) or undefined; it outlines
// the zone and makes the outline pulse, so an alert is found on the map without reading the list.
const markAlert = (element, severity) => {
  for (const s of ["critical", "warning", "info"]) element.classList.toggle("alert-" + s, severity === s);
  element.classList.toggle("alerting", Boolean(severity));
};

CS.updateMapZone = function updateMapZone(nodes, zoneId, reading, severity) {
  const node = nodes.zones[zoneId];
  if (!node) return;
  const los = reading ? reading.los : null;
  node.poly.setAttribute("fill", CS.losColour(los));
  markAlert(node.poly, severity);
  node.letter.textContent = los || "–";
  node.count.textContent = reading ? CS.people(reading.count) : "no reading";
};

CS.updateMapLine = function updateMapLine(nodes, lineId, reading) {
  const node = nodes.lines[lineId];
  if (!node) return;
  node.label.textContent = reading && reading.flow_pmm !== null
    ? `${node.line.name}: ${reading.flow_pmm.toFixed(1)} p/m/min` : node.line.name;
};

CS.selectMapZone = function selectMapZone(nodes, zoneId) {
  for (const [id, n] of Object.entries(nodes.zones)) n.poly.classList.toggle("selected", id === zoneId);
};

// One camera card: background image (fetched with the token) and zone outlines in image pixels.
CS.drawCamera = function drawCamera(container, cam) {
  const card = document.createElement("div");
  card.className = "camera";
  card.dataset.camera = cam.id;
  const fig = document.createElement("figure");
  const [w, h] = cam.image_size || [4, 3];
  const holder = document.createElement("div");
  holder.className = "placeholder";
  holder.style.aspectRatio = `${w} / ${h}`;
  holder.appendChild(document.createElement("span")).textContent = "no people-free background published yet";
  fig.appendChild(holder);
  const overlay = CS.svg("svg", { class: "overlay", viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" }, fig);
  const zones = {};
  for (const [zoneId, rings] of Object.entries(cam.zones_in_image || {})) {
    const polys = rings.map((ring) => CS.svg("polygon", { points: pts(ring, false), fill: CS.losColour(null),
      stroke: CS.losColour(null) }, overlay));
    const ring = rings[0];
    const cx = ring.reduce((s, p) => s + p[0], 0) / ring.length, cy = ring.reduce((s, p) => s + p[1], 0) / ring.length;
    const text = CS.svg("text", { x: cx, y: cy, "font-size": Math.max(w, h) / 22 }, overlay);
    text.textContent = "–";
    zones[zoneId] = { polys, text };
  }
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.textContent = cam.id;
  const health = document.createElement("span");
  health.className = "health";
  health.textContent = "no health report";
  caption.append(name, health);
  card.append(fig, caption);
  container.appendChild(card);
  return { card, fig, holder, zones, health, img: null, url: null };
};

CS.setCameraBackground = function setCameraBackground(node, blob) {
  if (!blob) return;
  if (!node.img) {
    node.img = document.createElement("img");
    node.img.alt = "people-free background of the camera view";
    node.fig.replaceChild(node.img, node.holder);
  }
  if (node.url) URL.revokeObjectURL(node.url);
  node.url = URL.createObjectURL(blob);
  node.img.src = node.url;
};

CS.updateCameraZone = function updateCameraZone(node, zoneId, reading, severity) {
  const z = node.zones[zoneId];
  if (!z) return;
  const colour = CS.losColour(reading ? reading.los : null);
  for (const p of z.polys) { p.setAttribute("fill", colour); p.setAttribute("stroke", colour); markAlert(p, severity); }
  z.text.textContent = reading ? `${reading.los || "–"} ${Math.round(reading.count)}` : "–";
};
