// Per-zone time series with capacity and risk thresholds (plotly, served from the installed wheel).
"use strict";
window.CS = window.CS || {};

// Plotly sizes text in px; follow the page's root size so a wall screen stays readable.
const basePx = () => parseFloat(getComputedStyle(document.documentElement).fontSize) || 14;
const RISK_STYLE = { slowed: "#ffb000", critical: "#ff6b3d", dangerous: "#ff2d2d" };

CS.drawZoneChart = function drawZoneChart(el, history, zone, latest) {
  if (!window.Plotly) {
    el.textContent = "charts unavailable: plotly.js is not installed on the server (pip install plotly)";
    return false;
  }
  const t = history.points.map((p) => new Date(p.ts * 1000));
  const counts = history.points.map((p) => p.count);
  const area = (latest && latest.area_m2) || history.area_m2;
  // The axis follows the data (a walkway of 2-9 people must not lie flat under a capacity of 250);
  // capacity and risk levels are drawn only when they fall inside it.
  const dataMax = Math.max(4, ...history.points.map((p) => p.count_max));
  const top = dataMax * 1.3;
  const traces = [
    { x: t, y: history.points.map((p) => p.count_max), mode: "lines", line: { width: 0 }, hoverinfo: "skip",
      showlegend: false },
    { x: t, y: history.points.map((p) => p.count_min), mode: "lines", line: { width: 0 }, fill: "tonexty",
      fillcolor: "rgba(74,163,255,0.2)", name: "min–max", hoverinfo: "skip" },
    { x: t, y: counts, mode: "lines+markers", marker: { size: 3 }, line: { color: "#4aa3ff", width: 2 },
      name: "people", customdata: history.points.map((p) => p.density),
      hovertemplate: "%{y:.0f} people, %{customdata:.2f} p/m²<extra></extra>" },
  ];
  const shapes = [], annotations = [];
  const hline = (y, colour, label, dash) => {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: colour, dash, width: 1.5 } });
    annotations.push({ xref: "paper", x: 1, y, xanchor: "right", yanchor: "bottom", text: label, showarrow: false,
      font: { color: colour, size: basePx() * 0.8 } });
  };
  if (history.capacity && history.capacity <= top) {
    hline(history.capacity, "#ff4d4d", `capacity ${history.capacity}`, "dash");
  }
  if (area) {
    for (const band of history.risk_bands.slice(0, -1)) {
      const next = history.risk_bands[history.risk_bands.indexOf(band) + 1];
      const y = band.below * area;
      if (y <= top) hline(y, RISK_STYLE[next.label] || "#ffb000", `${next.label} ≥ ${band.below} p/m²`, "dot");
    }
  }
  const layout = {
    margin: { l: 50, r: 10, t: 18, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: "#e8edf2", size: basePx() * 0.85 }, showlegend: false, shapes, annotations,
    xaxis: { gridcolor: "#2c3742", range: [new Date(history.start * 1000), new Date(history.end * 1000)] },
    yaxis: { gridcolor: "#2c3742", rangemode: "tozero", range: [0, top], title: { text: `people in ${zone.name}` } },
  };
  // no mode bar: it covered the threshold labels, and an operator does not zoom a live chart
  Plotly.react(el, traces, layout, { responsive: true, displaylogo: false, displayModeBar: false });
  return true;
};

CS.extendZoneChart = function extendZoneChart(el, reading) {
  if (!window.Plotly || !el.data) return;
  Plotly.extendTraces(el, { x: [[new Date(reading.ts * 1000)]], y: [[reading.count]],
    customdata: [[reading.density]] }, [2]);
  // keep the new point in view: the axes were fixed when the history was drawn
  const update = {};
  const [y0, y1] = el.layout.yaxis.range;
  if (reading.count > y1) update["yaxis.range"] = [y0, reading.count * 1.15];
  const [x0, x1] = el.layout.xaxis.range.map((v) => new Date(v).getTime());
  const t = reading.ts * 1000;
  if (t > x1) update["xaxis.range"] = [new Date(x0 + (t - x1) + 5000), new Date(t + 5000)];
  if (Object.keys(update).length) Plotly.relayout(el, update);
};
