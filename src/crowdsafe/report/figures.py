"""The debrief's charts, drawn with matplotlib and written as inline SVG (or JPEG for pictures).

Why and how: docs/design-notes.md, ``crowdsafe.report.figures``."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import matplotlib as mpl
import numpy as np
from matplotlib import dates as mdates
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon

from crowdsafe.report.compute import (
    RISK_LINES_PM2,
    CameraOverlay,
    GateSummary,
    Report,
    ZoneSummary,
    classify,
    holds,
)
from crowdsafe.safety.guidance import GREEN_GUIDE_PMM  # drawn whatever the site says

WIDTH_IN = 10.0
#: Fruin letters from free (green) to jammed (dark red); other band names get a ramp.
LOS_COLOURS = {"A": "#1a9850", "B": "#91cf60", "C": "#d9ef8b", "D": "#fee08b", "E": "#fc8d59", "F": "#d73027"}
SEVERITY_COLOURS = {"info": "#4575b4", "warning": "#f46d43", "critical": "#a50026"}
DENSITY_CMAP = "YlOrRd"


@dataclass(frozen=True)
class Chart:
    """One drawn figure: ``key`` makes its SVG ids unique within the page."""

    key: str
    title: str
    figure: Figure
    raster: bool = False  # a picture (JPEG), not a chart (SVG)


def band_colours(labels: Sequence[str]) -> dict[str, str]:
    if all(label in LOS_COLOURS for label in labels):
        return {label: LOS_COLOURS[label] for label in labels}
    ramp = mpl.colormaps["RdYlGn_r"]
    n = max(len(labels) - 1, 1)
    return {label: mpl.colors.to_hex(ramp(i / n)) for i, label in enumerate(labels)}


def _t(ts: Sequence[float]) -> np.ndarray:
    """Epoch seconds to datetime64 (matplotlib reads naive datetimes as UTC)."""
    return (np.asarray(ts, dtype=float) * 1000.0).astype("datetime64[ms]")


def _time_axis(ax: object, start: float, end: float) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)  # type: ignore[attr-defined]
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[attr-defined]
    ax.set_xlim(_t([start])[0], _t([end])[0])  # type: ignore[attr-defined]
    ax.grid(True, alpha=0.3)  # type: ignore[attr-defined]



def time_in_bands(report: Report) -> Chart | None:
    """Share of each zone's measured time in each LoS band (left) and risk band (right)."""
    zones = [z for z in report.zones if z.measured_s > 0]
    if not zones:
        return None
    fig = Figure(figsize=(WIDTH_IN, 0.45 * len(zones) + 1.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, attr, title in ((axes[0], "los_seconds", "Level of Service"), (axes[1], "risk_seconds", "Risk")):
        labels: list[str] = []
        for z in zones:
            labels += [k for k in getattr(z, attr) if k not in labels]
        colours = band_colours(labels)
        left = np.zeros(len(zones))
        for label in labels:
            share = np.array([100.0 * getattr(z, attr).get(label, 0.0) / z.measured_s for z in zones])
            ax.barh([z.name for z in zones], share, left=left, color=colours[label], label=label,
                    edgecolor="white", linewidth=0.5)
            left += share
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of measured time")
        ax.set_title(title)
        ax.legend(ncols=min(len(labels), 6), fontsize="small", loc="upper center",
                  bbox_to_anchor=(0.5, -0.25 if len(zones) < 4 else -0.1), frameon=False)
    axes[0].invert_yaxis()
    return Chart("bands", "Time in each band", fig)


def zone_chart(z: ZoneSummary, report: Report) -> Chart | None:
    """Occupancy with its interval and capacity; p/m² with 2/4/5 lines; LoS strip; forecast vs actual."""
    if z.count is None or not z.count.ts:
        return None
    has_fc = z.forecast is not None and bool(z.forecast.actual)
    ratios = [3, 3, 0.6] + ([3] if has_fc else [])
    fig = Figure(figsize=(WIDTH_IN, 2.0 * sum(ratios) / 3 + 0.6), layout="constrained")
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    t = _t(z.count.ts)
    ax = axes[0]
    if any(not math.isnan(v) for v in z.count.low):  # readings may carry no interval
        ax.fill_between(t, z.count.low, z.count.high, color="#4575b4", alpha=0.25, linewidth=0,
                        label="interval (mean of bounds)")
    ax.plot(t, z.count.mean, color="#4575b4", linewidth=1.2, label="occupancy (mean)")
    peak = max([*z.count.mean, *(v for v in z.count.high if not math.isnan(v))], default=0.0)
    if z.capacity and peak >= 0.25 * z.capacity:
        ax.axhline(z.capacity, color="#a50026", linestyle="--", linewidth=1, label=f"capacity {z.capacity}")
    elif z.capacity:  # a line at 250 would flatten a crowd of 10 into the axis: say where it is
        ax.plot([], [], color="#a50026", linestyle="--", linewidth=1, label=f"capacity {z.capacity} (above)")
    ax.set_ylabel("people")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    if z.density is not None and z.density.ts:
        ax.plot(_t(z.density.ts), z.density.mean, color="#313695", linewidth=1.2, label="p/m² (mean)")
    top = max([*(z.density.mean if z.density else []), 0.5])
    for level, style in zip(RISK_LINES_PM2, (":", "--", "-"), strict=True):
        if level <= top * 1.6:
            ax.axhline(level, color="#a50026", linestyle=style, linewidth=0.9, label=f"{level:g} p/m²")
    ax.set_ylabel("p/m²")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[2]
    labels = [b for b, _ in z.los_bands]
    colours = band_colours(labels)
    if z.density is not None and z.density.ts:
        # One row of pixels, a bucket each, drawn as an image: a strip of hundreds of coloured
        # rectangles would cost more than the rest of the chart in SVG.
        res = report.resolution_s
        first = math.floor(report.start / res)
        n = max(1, math.ceil(report.end / res) - first)
        rgba = np.zeros((1, n, 4))
        # Each bucket holds until the next one, as in the summary's time in band (``holds``): with
        # readings sparser than the buckets, the strip is continuous and gaps stay blank.
        held_s = holds(z.density.ts, report.end)
        for ts, held, value in zip(z.density.ts, held_s, z.density.mean, strict=True):
            label = classify(value, z.los_bands)
            i = round(ts / res) - first
            if label is not None and 0 <= i < n:
                rgba[0, i : i + max(1, round(held / res))] = mpl.colors.to_rgba(colours.get(label, "#999999"))
        x0, x1 = mdates.date2num(_t([first * res, (first + n) * res]))
        ax.imshow(rgba, aspect="auto", interpolation="nearest", extent=(x0, x1, 0, 1))
    ax.set_yticks([])
    ax.set_ylabel("LoS", rotation=0, ha="right", va="center")
    ax.legend(handles=[Patch(color=colours[b], label=b) for b in labels], ncols=len(labels),
              fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if has_fc and z.forecast is not None:
        fc = z.forecast
        ax = axes[3]
        ft = _t(fc.target_ts)
        if fc.lo80:
            ax.fill_between(ft, fc.lo80, fc.hi80, color="#fdae61", alpha=0.35, linewidth=0,
                            label="80 % interval")
        ax.plot(ft, fc.actual, color="#4575b4", linewidth=1.2, label="actual (minute mean)")
        ax.plot(ft, fc.forecast, color="#d73027", linewidth=1.2, linestyle="--",
                label=f"forecast {fc.horizon_min} min ahead ({fc.method})")
        ax.set_ylabel("people")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small", loc="upper left")
        ax.set_title(f"Forecast error: MAE {fc.mae:.1f} people", fontsize="small", loc="right")
    for ax in axes:
        _time_axis(ax, report.start, report.end)
    axes[2].grid(False)
    fig.suptitle(z.name)
    return Chart(f"zone-{z.zone_id}", z.name, fig)


def gate_chart(g: GateSummary, report: Report) -> Chart | None:
    """Flow against the Green Guide rates and the site's limits; cumulative in and out."""
    if g.flow is None or not g.cumulative_ts:
        return None
    fig = Figure(figsize=(WIDTH_IN, 4.6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    ax = axes[0]
    ax.plot(_t(g.flow.ts), g.flow.mean, color="#313695", linewidth=1.2, label="flow (mean)")
    top = max([*g.flow.mean, 1.0])
    for kind, rate in GREEN_GUIDE_PMM.items():
        ax.axhline(rate, color="#a50026", linestyle="--" if kind == "level" else ":", linewidth=0.9,
                   label=f"Green Guide {'stepped' if kind == 'stairs' else kind} {rate:g}")
    for kind, rate in report.site_flow_limits.items():
        if rate != GREEN_GUIDE_PMM.get(kind):
            ax.axhline(rate, color="#f46d43", linestyle="-.", linewidth=0.9,
                       label=f"site limit {kind} {rate:g}")
    ax.set_ylim(0, max(top * 1.15, max([*GREEN_GUIDE_PMM.values(), *report.site_flow_limits.values()]) * 1.1))
    ax.set_ylabel("p/m/min")
    ax.legend(fontsize="small", loc="upper left", ncols=2)
    ax = axes[1]
    ct = _t(g.cumulative_ts)
    ax.plot(ct, g.cumulative_in, color="#1a9850", label=f"in ({g.total_in:.0f})")
    ax.plot(ct, g.cumulative_out, color="#d73027", label=f"out ({g.total_out:.0f})")
    ax.set_ylabel("people, cumulative")
    ax.legend(fontsize="small", loc="upper left")
    for ax in axes:
        _time_axis(ax, report.start, report.end)
    fig.suptitle(g.name)
    return Chart(f"gate-{g.line_id}", g.name, fig)


def alerts_chart(report: Report) -> Chart | None:
    """One row per alert subject and rule: raised to cleared (or the period's end), ack marked."""
    if not report.alerts:
        return None
    rows = list(dict.fromkeys(f"{a.subject} · {a.rule}" for a in report.alerts))
    fig = Figure(figsize=(WIDTH_IN, 0.35 * len(rows) + 1.4), layout="constrained")
    ax = fig.subplots()
    for a in report.alerts:
        y = rows.index(f"{a.subject} · {a.rule}")
        end = a.cleared_ts if a.cleared_ts is not None else report.end
        colour = SEVERITY_COLOURS.get(a.severity, "#666")
        ax.plot(_t([a.raised_ts, end]), [y, y], color=colour, linewidth=5, solid_capstyle="butt")
        if a.acknowledged_ts is not None:
            ax.plot(_t([a.acknowledged_ts]), [y], marker="|", color="black", markersize=12)
    ax.set_yticks(range(len(rows)), rows, fontsize="small")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    handles = [Patch(color=c, label=s) for s, c in SEVERITY_COLOURS.items()]
    ax.legend(handles=handles, fontsize="small", loc="upper right", title="| = acknowledged",
              title_fontsize="x-small")
    _time_axis(ax, report.start, report.end)
    return Chart("alerts", "Alert timeline", fig)


def staffing_chart(report: Report) -> Chart | None:
    if not report.staffing:
        return None
    fig = Figure(figsize=(WIDTH_IN, 3.2), layout="constrained")
    ax = fig.subplots()
    colours = mpl.colormaps["tab10"]
    slot_s = None
    for i, zone_id in enumerate(dict.fromkeys(r.zone_id for r in report.staffing)):
        rows = [r for r in report.staffing if r.zone_id == zone_id]
        slot_s = slot_s or (rows[1].slot_start_ts - rows[0].slot_start_ts if len(rows) > 1 else None)
        ts = [r.slot_start_ts for r in rows]
        ax.step(_t(ts), [r.recommended for r in rows], where="post", color=colours(i % 10),
                label=f"{zone_id} recommended")
        if rows[0].planned is not None:
            ax.step(_t(ts), [r.planned for r in rows], where="post", color=colours(i % 10), linestyle="--",
                    label=f"{zone_id} planned")
    ax.set_ylabel("stewards")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left", ncols=2)
    _time_axis(ax, report.start, report.end)
    return Chart("staffing", "Stewards: recommended and planned", fig)


def egress_chart(report: Report) -> Chart | None:
    if not report.egress:
        return None
    fig = Figure(figsize=(WIDTH_IN, 0.45 * len(report.egress) + 1.4), layout="constrained")
    ax = fig.subplots()
    names = [e.zone_id for e in report.egress]
    colours = ["#1a9850" if e.within_target else "#d73027" for e in report.egress]
    ax.barh(names, [e.clearance_s for e in report.egress], color=colours)
    ax.axvline(report.egress_target_s, color="black", linestyle="--",
               label=f"target {report.egress_target_s:g} s")
    ax.set_xlabel("clearance time at the zone's peak, s")
    ax.invert_yaxis()
    ax.legend(fontsize="small")
    return Chart("egress", "Clearance time at peak", fig)


def uptime_chart(report: Report) -> Chart | None:
    if not report.cameras:
        return None
    fig = Figure(figsize=(WIDTH_IN, 0.4 * len(report.cameras) + 1.3), layout="constrained")
    ax = fig.subplots()
    for i, cam in enumerate(report.cameras):
        for spans, colour in ((cam.up_intervals, "#1a9850"), (cam.gaps, "#d73027")):
            ax.broken_barh([(_t([a])[0], _t([b])[0] - _t([a])[0]) for a, b in spans], (i - 0.3, 0.6),
                           color=colour)
    ax.set_yticks(range(len(report.cameras)), [c.camera_id for c in report.cameras])
    ax.set_ylim(len(report.cameras) - 0.5, -0.5)
    ax.legend(handles=[Patch(color="#1a9850", label="up"), Patch(color="#d73027", label="gap")],
              fontsize="small", loc="upper right")
    _time_axis(ax, report.start, report.end)
    return Chart("uptime", "Camera uptime", fig)


def overlay_chart(overlay: CameraOverlay) -> Chart | None:
    """The people-free background (or a blank frame) with each zone filled by its mean p/m².

    The fill is the zone's mean density over the period from the stored readings; no frame is
    read here, only the published temporal-median background, which has no people in it.
    """
    if overlay.image_size is None:
        return None
    w, h = overlay.image_size
    fig = Figure(figsize=(WIDTH_IN * 0.7, WIDTH_IN * 0.7 * h / w + 0.3), layout="constrained")
    ax = fig.subplots()
    if overlay.background is not None:
        image = cv2.imread(str(overlay.background))
        if image is not None:
            ax.imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), extent=(0, w, h, 0))
    ax.set_facecolor("#dddddd")
    top = max([*overlay.mean_density.values(), 1.0])
    norm = Normalize(0.0, top)
    cmap = mpl.colormaps[DENSITY_CMAP]
    for zone_id, rings in overlay.zones.items():
        mean = overlay.mean_density.get(zone_id)
        colour = cmap(norm(mean)) if mean is not None else (0.6, 0.6, 0.6, 1.0)
        for ring in rings:
            ax.add_patch(Polygon(ring, closed=True, facecolor=colour, alpha=0.5, edgecolor="black",
                                 linewidth=1))
            cu, cv = np.mean(np.asarray(ring, dtype=float), axis=0)
            label = zone_id if mean is None else f"{zone_id}\n{mean:.2f} p/m²"
            ax.text(cu, cv, label, ha="center", va="center", fontsize="small",
                    bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="mean p/m² over the period",
                 shrink=0.8)
    return Chart(f"camera-{overlay.camera_id}", f"Camera {overlay.camera_id}", fig,
                 raster=overlay.background is not None)


def charts(report: Report) -> dict[str, Chart]:
    """Every chart of the report by key (absent where there is nothing to draw)."""
    made = [time_in_bands(report), *(zone_chart(z, report) for z in report.zones),
            *(gate_chart(g, report) for g in report.gates), alerts_chart(report), staffing_chart(report),
            egress_chart(report), uptime_chart(report), *(overlay_chart(o) for o in report.overlays)]
    return {c.key: c for c in made if c is not None}


def to_svg(chart: Chart) -> str:
    """The figure as an ``<svg>`` element for inline use (no XML prolog), ids unique per chart."""
    buf = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart.key, "svg.image_inline": True}):
        chart.figure.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return _PATH_DATA.sub(_shorter_path, text[text.index("<svg") :])


_PATH_DATA = re.compile(r'd="([^"]*)"')
_LONG_NUMBER = re.compile(r"(-?\d+\.\d)\d+")


def _shorter_path(match: re.Match[str]) -> str:
    """Path data at 0.1 pt on one line: a third of the bytes, no visible difference."""
    return 'd="' + _LONG_NUMBER.sub(r"\1", " ".join(match.group(1).split())) + '"'


def to_img(chart: Chart, quality: int = 80) -> str:
    """A picture chart as an ``<img>`` with a JPEG data URI (a background photo is no vector art)."""
    buf = io.BytesIO()
    chart.figure.savefig(buf, format="jpg", dpi=110, pil_kwargs={"quality": quality})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(chart.title)}" src="data:image/jpeg;base64,{data}">'


def to_html(chart: Chart) -> str:
    return to_img(chart) if chart.raster else to_svg(chart)
