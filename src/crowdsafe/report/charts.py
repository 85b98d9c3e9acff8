"""The debrief's charts as inline SVG (see ``crowdsafe.report.svg`` for why not matplotlib).

Every chart reads only the ``Report``: stored readings, never a frame. Times on the axes are the
site's local time, 24-hour.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crowdsafe.report.clock import Clock
from crowdsafe.report.compute import (
    RISK_LINES_PM2,
    CameraOverlay,
    GateSummary,
    Report,
    ZoneSummary,
    classify,
    holds,
)
from crowdsafe.report.svg import LEFT, RIGHT, WIDTH, Panel, document, esc, nice_step, num
from crowdsafe.safety.guidance import GREEN_GUIDE_PMM

#: Fruin letters from free (green) to jammed (dark red); other band names get a ramp.
LOS_COLOURS = {"A": "#1a9850", "B": "#91cf60", "C": "#d9ef8b", "D": "#fee08b", "E": "#fc8d59", "F": "#d73027"}
SEVERITY_COLOURS = {"info": "#4575b4", "warning": "#f46d43", "critical": "#a50026"}
_RAMP = ["#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027"]
_YLORRD = ["#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026"]
_ZONE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]
PLOT_W = WIDTH - LEFT - RIGHT


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: str


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(1.0, c)) * 255):02x}" for c in rgb)


def _interp(stops: Sequence[str], u: float) -> str:
    u = max(0.0, min(1.0, u)) * (len(stops) - 1)
    i = min(int(u), len(stops) - 2)
    a = np.array([int(stops[i][k:k + 2], 16) for k in (1, 3, 5)]) / 255
    b = np.array([int(stops[i + 1][k:k + 2], 16) for k in (1, 3, 5)]) / 255
    return _hex(a + (b - a) * (u - i))


def band_colours(labels: Sequence[str]) -> dict[str, str]:
    if all(label in LOS_COLOURS for label in labels):
        return {label: LOS_COLOURS[label] for label in labels}
    n = max(len(labels) - 1, 1)
    return {label: _interp(_RAMP, i / n) for i, label in enumerate(labels)}



def _top(values: Sequence[float], floor: float = 1.0) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    peak = max([*finite, floor])
    step = nice_step(peak * 1.1)
    return math.ceil(peak * 1.1 / step) * step


def _panel(top: float, height: float, start: float, end: float, ytop: float) -> Panel:
    return Panel(LEFT, top, PLOT_W, height, (start, end), (0.0, ytop))


def _finish(key: str, title: str, height: float, panels: Sequence[Panel], extra: str = "") -> Chart:
    body = f'<text x="{WIDTH / 2:.0f}" y="18" font-size="13" text-anchor="middle" font-weight="600">' \
           f"{esc(title)}</text>"
    for p in panels:
        p.frame()
        p.draw_legend()
        body += p.svg()
    return Chart(key, title, document(WIDTH, height, title, body + extra))


def time_in_bands(report: Report) -> Chart | None:
    """Share of each zone's measured time in each LoS band (left) and risk band (right)."""
    zones = [z for z in report.zones if z.measured_s > 0]
    if not zones:
        return None
    row = 22.0
    height = 70 + row * len(zones) + 40
    panels = []
    left_w = 150.0
    each = (WIDTH - left_w - 20) / 2 - 10
    for k, (attr, title) in enumerate((("los_seconds", "Level of Service"), ("risk_seconds", "Risk"))):
        x0 = left_w + k * (each + 20)
        p = Panel(x0, 40, each, row * len(zones), (0.0, 100.0), (0.0, float(len(zones))))
        labels: list[str] = []
        for z in zones:
            labels += [b for b in getattr(z, attr) if b not in labels]
        colours = band_colours(labels)
        for i, z in enumerate(zones):
            left = 0.0
            for label in labels:
                share = 100.0 * getattr(z, attr).get(label, 0.0) / z.measured_s
                if share > 0:
                    p.rect(left, left + share, len(zones) - i - 0.85, len(zones) - i - 0.15, colours[label],
                           f"{z.name}: {label} {share:.0f} %")
                left += share
            if k == 0:
                p.text(x0 - 6, p.y(len(zones) - i - 0.5) + 4, z.name, "end")
        p.text(x0 + each / 2, 34, title, "middle", 12, weight="600")
        for v in (0, 25, 50, 75, 100):
            p.text(p.x(v), p.top + p.height + 13, f"{v}", "middle", 10)
        p.text(x0 + each / 2, p.top + p.height + 27, "% of measured time", "middle", 10)
        x = x0
        for label in labels:  # legend under the bars
            p.parts.append(f'<rect x="{x:.1f}" y="{p.top + p.height + 34:.1f}" width="10" height="9" '
                           f'fill="{colours[label]}"/>')
            p.text(x + 13, p.top + p.height + 42, label, size=10)
            x += 22 + 6.2 * len(label)
        p.frame()
        panels.append(p.svg())
    title = "Time in each band"
    return Chart("bands", title, document(WIDTH, height + 12, title, "".join(panels)))


def zone_chart(z: ZoneSummary, report: Report, clock: Clock) -> Chart | None:
    """Occupancy with its interval and capacity; p/m² with 2/4/5 lines; LoS strip; forecast vs actual."""
    if z.count is None or not z.count.ts:
        return None
    start, end = report.start, report.end
    has_fc = z.forecast is not None and bool(z.forecast.actual)
    panels: list[Panel] = []
    y = 34.0
    # occupancy
    highs = [v for v in z.count.high if not math.isnan(v)]
    peak = max([*z.count.mean, *highs], default=0.0)
    show_cap = bool(z.capacity) and peak >= 0.25 * (z.capacity or 0)
    p = _panel(y, 130, start, end, _top([peak, *( [z.capacity] if show_cap and z.capacity else [])]))
    p.time_axis(clock, labels=False)
    p.y_axis("people")
    if highs:
        p.band(z.count.ts, z.count.low, z.count.high, "#4575b4", "interval (mean of bounds)")
    p.line(z.count.ts, z.count.mean, "#4575b4", "occupancy (mean)")
    if z.capacity and show_cap:
        p.hline(z.capacity, "#a50026", f"capacity {z.capacity}")
    elif z.capacity:  # a line at 250 would flatten a crowd of 10 into the axis: say where it is
        p.legend.append((f"capacity {z.capacity} (above)", "#a50026", "line:5 3"))
    panels.append(p)
    y += 140
    # density
    dens = z.density.mean if z.density is not None else []
    top = max([*dens, 0.5])
    levels = [lv for lv in RISK_LINES_PM2 if lv <= top * 1.6]
    p = _panel(y, 110, start, end, _top([*dens, *levels], 0.5))
    p.time_axis(clock, labels=False)
    p.y_axis("p/m²")
    if z.density is not None and z.density.ts:
        p.line(z.density.ts, z.density.mean, "#313695", "p/m² (mean)")
    for level, dash in zip(RISK_LINES_PM2, ("2 2", "5 3", None), strict=True):
        if level in levels:
            p.hline(level, "#a50026", f"{level:g} p/m²", dash)
    panels.append(p)
    y += 118
    # LoS strip: each bucket holds until the next one, as in the summary's time in band
    labels = [b for b, _ in z.los_bands]
    colours = band_colours(labels)
    p = _panel(y, 22, start, end, 1.0)
    if z.density is not None and z.density.ts:
        runs: list[list[float | str]] = []  # [start, end, colour]: one rectangle per run of a band
        for ts, held, value in zip(z.density.ts, holds(z.density.ts, end), z.density.mean, strict=True):
            label = classify(value, z.los_bands)
            if label is None:
                continue
            colour, stop = colours.get(label, "#999999"), ts + max(held, report.resolution_s)
            if runs and runs[-1][2] == colour and ts <= float(runs[-1][1]) + 1e-6:
                runs[-1][1] = stop
            else:
                runs.append([ts, stop, colour])
        for a, b, colour in runs:
            p.rect(float(a), float(b), 0, 1, str(colour))
    p.text(LEFT - 6, y + 15, "LoS", "end", 11)
    x = LEFT + PLOT_W + 10
    for label in labels:
        p.parts.append(f'<rect x="{x:.1f}" y="{y + 6:.1f}" width="9" height="9" fill="{colours[label]}"/>')
        p.text(x + 11, y + 15, label, size=9)
        x += 16 + 5.5 * len(label)
    panels.append(p)
    y += 30
    if has_fc and z.forecast is not None:
        fc = z.forecast
        y += 8
        p = _panel(y, 110, start, end, _top([*fc.actual, *fc.forecast, *fc.hi80]))
        p.time_axis(clock, labels=False)
        p.y_axis("people")
        if fc.lo80:
            p.band(fc.target_ts, fc.lo80, fc.hi80, "#fdae61", "80 % interval", 0.35)
        p.line(fc.target_ts, fc.actual, "#4575b4", "actual (minute mean)")
        p.line(fc.target_ts, fc.forecast, "#d73027", f"forecast {fc.horizon_min} min ahead ({fc.method})",
               dash="5 3")
        p.text(LEFT + PLOT_W, y - 4, f"Forecast error: MAE {fc.mae:.1f} people", "end", 10)
        panels.append(p)
        y += 118
    panels[-1].time_axis(clock)
    return _finish(f"zone-{z.zone_id}", z.name, y + 22, panels)


def gate_chart(g: GateSummary, report: Report, clock: Clock) -> Chart | None:
    """Flow against the Green Guide rates and the site's limits; cumulative in and out."""
    if g.flow is None or not g.cumulative_ts:
        return None
    start, end = report.start, report.end
    limits = [*GREEN_GUIDE_PMM.values(), *report.site_flow_limits.values()]
    p = _panel(34, 130, start, end, _top([*g.flow.mean, *(v * 1.0 for v in limits)]))
    p.time_axis(clock, labels=False)
    p.y_axis("p/m/min")
    p.line(g.flow.ts, g.flow.mean, "#313695", "flow (mean)")
    for kind, rate in GREEN_GUIDE_PMM.items():
        p.hline(rate, "#a50026", f"Green Guide {'stepped' if kind == 'stairs' else kind} {rate:g}",
                "5 3" if kind == "level" else "2 2")
    for kind, rate in report.site_flow_limits.items():
        if rate != GREEN_GUIDE_PMM.get(kind):
            p.hline(rate, "#f46d43", f"site limit {kind} {rate:g}", "6 2 2 2")
    q = _panel(176, 120, start, end, _top([*g.cumulative_in, *g.cumulative_out]))
    q.time_axis(clock)
    q.y_axis("people, cumulative")
    q.line(g.cumulative_ts, g.cumulative_in, "#1a9850", f"in ({g.total_in:.0f})")
    q.line(g.cumulative_ts, g.cumulative_out, "#d73027", f"out ({g.total_out:.0f})")
    return _finish(f"gate-{g.line_id}", g.name, 318, [p, q])


def alerts_chart(report: Report, clock: Clock) -> Chart | None:
    """One row per alert subject and rule: raised to cleared (or the period's end), ack marked."""
    if not report.alerts:
        return None
    rows = list(dict.fromkeys(f"{a.subject} · {a.rule}" for a in report.alerts))
    left = 190.0
    p = Panel(left, 34, WIDTH - left - RIGHT, 22 * len(rows), (report.start, report.end),
              (0.0, float(len(rows))))
    p.time_axis(clock)
    for i, name in enumerate(rows):
        p.text(left - 6, p.y(len(rows) - i - 0.5) + 4, name, "end", 10)
    for a in report.alerts:
        i = rows.index(f"{a.subject} · {a.rule}")
        end = a.cleared_ts if a.cleared_ts is not None else report.end
        yc = len(rows) - i - 0.5
        p.rect(a.raised_ts, max(end, a.raised_ts + report.resolution_s), yc - 0.25, yc + 0.25,
               SEVERITY_COLOURS.get(a.severity, "#666"), f"{a.severity}: {a.message or a.rule}")
        if a.acknowledged_ts is not None:
            x = p.x(a.acknowledged_ts)
            y0, y1 = p.y(yc + 0.4), p.y(yc - 0.4)
            p.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0:.1f}" y2="{y1:.1f}" '
                           'stroke="black" stroke-width="2"/>')
    for sev, colour in SEVERITY_COLOURS.items():
        p.legend.append((sev, colour, "box"))
    p.legend.append(("| = acknowledged", "black", "line:"))
    return _finish("alerts", "Alert timeline", 34 + p.height + 30, [p])


def staffing_chart(report: Report, clock: Clock) -> Chart | None:
    """Stewards recommended (solid) and planned (dashed) per zone; each slot drawn to its end."""
    if not report.staffing:
        return None
    from crowdsafe.report.compute import STAFF_SLOT_MIN

    slot_s = STAFF_SLOT_MIN * 60.0
    values = [r.recommended for r in report.staffing] + [r.planned or 0 for r in report.staffing]
    p = _panel(34, 150, report.start, report.end, _top([float(v) for v in values], 2.0))
    p.time_axis(clock)
    p.y_axis("stewards")
    for i, zone_id in enumerate(dict.fromkeys(r.zone_id for r in report.staffing)):
        rows = [r for r in report.staffing if r.zone_id == zone_id]
        ts = [r.slot_start_ts for r in rows]
        slot_end = min(report.end, ts[-1] + slot_s)
        colour = _ZONE_COLOURS[i % len(_ZONE_COLOURS)]
        p.step(ts, [float(r.recommended) for r in rows], slot_end, colour, f"{zone_id} recommended")
        if rows[0].planned is not None:
            p.step(ts, [float(r.planned or 0) for r in rows], slot_end, colour, f"{zone_id} planned", "5 3")
    return _finish("staffing", "Stewards: recommended and planned", 34 + 150 + 30, [p])


def egress_chart(report: Report) -> Chart | None:
    if not report.egress:
        return None
    left = 150.0
    top = max([e.clearance_s for e in report.egress] + [report.egress_target_s])
    p = Panel(left, 34, WIDTH - left - RIGHT, 24 * len(report.egress), (0.0, _top([top], 10.0)),
              (0.0, float(len(report.egress))))
    n = len(report.egress)
    for i, e in enumerate(report.egress):
        colour = "#1a9850" if e.within_target else "#d73027"
        p.rect(0, e.clearance_s, n - i - 0.8, n - i - 0.2, colour, f"{e.zone_id}: {e.clearance_s:.0f} s")
        p.text(left - 6, p.y(n - i - 0.5) + 4, e.zone_id, "end")
    p.vline(report.egress_target_s, "black", f"target {report.egress_target_s:g} s")
    step = nice_step(p.xlim[1])
    v = 0.0
    while v <= p.xlim[1] + 1e-9:
        p.text(p.x(v), p.top + p.height + 13, num(v), "middle", 10)
        v += step
    p.text(left + p.width / 2, p.top + p.height + 28, "clearance time at the zone's peak, s", "middle", 10)
    return _finish("egress", "Clearance time at peak", 34 + p.height + 40, [p])


def uptime_chart(report: Report, clock: Clock) -> Chart | None:
    if not report.cameras:
        return None
    left = 120.0
    n = len(report.cameras)
    p = Panel(left, 34, WIDTH - left - RIGHT, 24 * n, (report.start, report.end), (0.0, float(n)))
    p.time_axis(clock)
    for i, cam in enumerate(report.cameras):
        yc = n - i - 0.5
        for spans, colour, what in ((cam.up_intervals, "#1a9850", "up"), (cam.gaps, "#d73027", "gap"),
                                    (cam.not_running, "#bbbbbb", "not running")):
            for a, b in spans:
                p.rect(a, b, yc - 0.3, yc + 0.3, colour, f"{cam.camera_id}: {what}")
        p.text(left - 6, p.y(yc) + 4, cam.camera_id, "end")
    for label, colour in (("up", "#1a9850"), ("gap", "#d73027"), ("not running yet", "#bbbbbb")):
        p.legend.append((label, colour, "box"))
    return _finish("uptime", "Camera uptime", 34 + p.height + 30, [p])


def overlay_chart(overlay: CameraOverlay) -> Chart | None:
    """The people-free background (or a blank frame) with each zone filled by its mean p/m².

    No frame is read here, only the published background, which has no people in it.
    """
    if overlay.image_size is None:
        return None
    w, h = overlay.image_size
    width = 640.0
    scale = width / w
    height = h * scale
    parts = [f'<rect x="0" y="30" width="{width:.0f}" height="{height:.0f}" fill="#dddddd"/>']
    if overlay.background is not None:
        try:
            data = base64.b64encode(overlay.background.read_bytes()).decode("ascii")
            parts.append(f'<image x="0" y="30" width="{width:.0f}" height="{height:.0f}" '
                         f'preserveAspectRatio="none" href="data:image/jpeg;base64,{data}"/>')
        except OSError:
            pass
    top = max([*overlay.mean_density.values(), 1.0])
    for zone_id, rings in overlay.zones.items():
        mean = overlay.mean_density.get(zone_id)
        colour = _interp(_YLORRD, mean / top) if mean is not None else "#999999"
        for ring in rings:
            pts = " ".join(f"{u * scale:.1f},{30 + v * scale:.1f}" for u, v in ring)
            parts.append(f'<polygon points="{pts}" fill="{colour}" fill-opacity="0.5" stroke="black"/>')
            cu, cv = np.mean(np.asarray(ring, dtype=float), axis=0)
            label = zone_id if mean is None else f"{zone_id} {mean:.2f} p/m²"
            parts.append(f'<text x="{cu * scale:.1f}" y="{30 + cv * scale:.1f}" font-size="11" '
                         f'text-anchor="middle" paint-order="stroke" stroke="white" stroke-width="3">'
                         f"{esc(label)}</text>")
    # colour bar
    bx = width + 20
    for k in range(40):
        parts.append(f'<rect x="{bx:.0f}" y="{30 + height * (1 - (k + 1) / 40):.1f}" width="14" '
                     f'height="{height / 40 + 0.5:.1f}" fill="{_interp(_YLORRD, k / 39)}"/>')
    for k in range(5):
        v = top * k / 4
        parts.append(f'<text x="{bx + 18:.0f}" y="{30 + height * (1 - k / 4) + 4:.1f}" font-size="10">'
                     f"{v:.2f}</text>")
    parts.append(f'<text x="{bx:.0f}" y="{30 + height + 16:.0f}" font-size="10">'
                 "mean p/m² over the period</text>")
    title = f"Camera {overlay.camera_id}"
    head = f'<text x="{width / 2:.0f}" y="18" font-size="13" text-anchor="middle" font-weight="600">' \
           f"{esc(title)}</text>"
    return Chart(f"camera-{overlay.camera_id}", title, document(width + 190, height + 52, title,
                                                                  head + "".join(parts)))


def charts(report: Report, clock: Clock | None = None) -> dict[str, Chart]:
    """Every chart of the report by key (absent where there is nothing to draw)."""
    clock = clock or Clock(report.timezone)
    made = [time_in_bands(report), *(zone_chart(z, report, clock) for z in report.zones),
            *(gate_chart(g, report, clock) for g in report.gates), alerts_chart(report, clock),
            staffing_chart(report, clock), egress_chart(report), uptime_chart(report, clock),
            *(overlay_chart(o) for o in report.overlays)]
    return {c.key: c for c in made if c is not None}
