"""A ``Report`` as one self-contained HTML page (and, optionally, a PDF of its charts).

The page has no script and fetches nothing: charts are inline SVG, pictures are data URIs, the
style sheet is inline. It opens offline, survives e-mail and archiving, and prints (each
section starts on a new page; charts are never split). Times are in the site's time zone
(``timezone`` in the site file) with UTC alongside, 24-hour: the debrief is signed where the event
happened, and compared with logs kept in UTC. It ends with a sign-off block.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from pathlib import Path

from crowdsafe.report.charts import Chart, charts
from crowdsafe.report.clock import Clock
from crowdsafe.report.compute import Report
from crowdsafe.safety.guidance import GREEN_GUIDE_LEVEL_PMM, GREEN_GUIDE_STAIRS_PMM

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1000px;
padding:0 1rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ccc;padding-bottom:.2rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0;break-inside:avoid}svg,img{max-width:100%;height:auto}
.note{color:#555;font-size:.9rem}.bad{color:#a50026;font-weight:600}.ok{color:#1a6e34}
nav ol{columns:2}.sign td{height:2.2rem;min-width:16rem}
@media print{body{margin:0;max-width:none}section{break-before:page}h2{margin-top:0}nav{display:none}}
"""

SECTIONS = (("summary", "Summary"), ("zones", "Per zone"), ("gates", "Per gate"), ("alerts", "Alerts"),
            ("staffing", "Staffing"), ("egress", "Egress"), ("quality", "Data quality"),
            ("cameras", "Camera views"), ("actions", "Operator actions"), ("signoff", "Sign-off"))

#: The clock of the report being rendered (set by ``render_html``; UTC outside it). A context
#: variable, so reports rendered side by side in threads each keep their own.
_UTC = Clock()
_CLOCK: ContextVar[Clock] = ContextVar("report_clock", default=_UTC)


def fmt_ts(ts: float | None, clock: Clock | None = None) -> str:
    """Local time with UTC alongside: '2026-12-07 14:03:05 CET (13:03:05 UTC)'."""
    return (clock or _CLOCK.get()).full(ts)


def fmt_dur(seconds: float | None) -> str:
    """h:mm:ss (a debrief compares durations across rows; one format keeps them comparable)."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _e(text: object) -> str:
    return html.escape(str(text))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; columns in ``numeric`` are right-aligned. Cells are escaped."""

    def cells(tag: str, values: Iterable[object]) -> str:
        return "".join(f'<{tag} class="n">{_e(v)}</{tag}>' if i in numeric else f"<{tag}>{_e(v)}</{tag}>"
                       for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', headers)}</tr></thead><tbody>{body}</tbody></table>"


def _figure(chart: Chart | None) -> str:
    if chart is None:
        return ""
    return f'<figure>{chart.svg}<figcaption class="note">{_e(chart.title)}</figcaption></figure>'


def _summary(r: Report, drawn: dict[str, Chart]) -> str:
    zones = table(["Zone", "Peak people", "at", "% of capacity", "Peak p/m²", "at", "Mean people",
                   "Readings"],
                  [[z.name, fmt(z.peak_count), fmt_ts(z.peak_count_ts), fmt(z.peak_pct_of_capacity),
                    fmt(z.peak_density, 2), fmt_ts(z.peak_density_ts), fmt(z.mean_count), z.readings]
                   for z in r.zones], numeric=(1, 3, 4, 6, 7))
    los_labels = list(dict.fromkeys(b for z in r.zones for b in z.los_seconds))
    los = table(["Zone", *los_labels, "Measured"],
                [[z.name, *(fmt_dur(z.los_seconds.get(b)) if b in z.los_seconds else "–" for b in los_labels),
                  fmt_dur(z.measured_s)] for z in r.zones], numeric=range(1, len(los_labels) + 2))
    risk_labels = [b for b, _ in r.risk_bands]
    risk = table(["Zone", *risk_labels],
                 [[z.name, *(fmt_dur(z.risk_seconds.get(b, 0.0)) if z.readings else "–" for b in risk_labels)]
                  for z in r.zones], numeric=range(1, len(risk_labels) + 1))
    gates = table(["Gate", "In", "Out", "Peak p/m/min", "at"],
                  [[g.name, fmt(g.total_in, 0), fmt(g.total_out, 0), fmt(g.peak_flow_pmm),
                    fmt_ts(g.peak_flow_ts)] for g in r.gates], numeric=(1, 2, 3))
    by_sev = []
    for severity, n in r.alerts_by_severity.items():
        acks = [a.ack_s for a in r.alerts if a.severity == severity and a.ack_s is not None]
        by_sev.append([severity, n, len(acks), fmt_dur(statistics.median(acks)) if acks else "–",
                       fmt_dur(max(acks)) if acks else "–"])
    alerts = table(["Severity", "Alerts", "Acknowledged", "Median time to ack", "Longest time to ack"],
                   by_sev, numeric=(1, 2, 3, 4)) if by_sev else "<p>No alert was raised in the period.</p>"
    return (
        f"<h3>Peaks</h3>{zones}<h3>Time in each Level of Service band</h3>{los}"
        f"<h3>Time in each risk band</h3>{risk}{_figure(drawn.get('bands'))}"
        f"<h3>Gates</h3>{gates if r.gates else '<p>No gate in the site file.</p>'}"
        f"<h3>Alerts by severity</h3>{alerts}"
        '<p class="note">Each reading counts until the next one; a gap over twice the usual step '
        "counts as unmeasured (see Data quality). LoS and risk are the bands stored with each "
        "reading.</p>"
    )


def _zones(r: Report, drawn: dict[str, Chart]) -> str:
    parts = []
    for z in r.zones:
        parts.append(f'<h3 id="zone-{_e(z.zone_id)}">{_e(z.name)}</h3>')
        if not z.readings:
            parts.append("<p>No reading in the period.</p>")
            continue
        parts.append(_figure(drawn.get(f"zone-{z.zone_id}")))
        fc = z.forecast
        if fc is not None and fc.actual:
            cov = fc.coverage80
            inside = "" if cov is None else (
                f", {fmt(100 * cov, 0)} % of actual minutes inside the 80 % interval")
            parts.append(f"<p>Forecast {fc.horizon_min} min ahead ({_e(fc.method)}), issued every 5 min: "
                         f"{len(fc.actual)} forecasts, mean absolute error {fmt(fc.mae)} people{inside}.</p>")
        elif z.forecast_note:
            parts.append(f'<p class="note">Forecast: {_e(z.forecast_note)}.</p>')
    return "".join(parts) or "<p>No zone in the site file.</p>"


def _gates(r: Report, drawn: dict[str, Chart]) -> str:
    parts = []
    for g in r.gates:
        parts.append(f"<h3>{_e(g.name)}</h3>")
        parts.append(_figure(drawn.get(f"gate-{g.line_id}")) if g.readings
                     else "<p>No reading in the period.</p>")
    limits = ", ".join(f"{k} {v:g}" for k, v in r.site_flow_limits.items())
    return ("".join(parts) or "<p>No gate in the site file.</p>") + (
        f'<p class="note">Flow is people per metre of gate width per minute, both directions. Green Guide '
        f"rates: {GREEN_GUIDE_LEVEL_PMM:g} level, {GREEN_GUIDE_STAIRS_PMM:g} stepped; "
        f"this site's limits: {_e(limits)}.</p>"
    )


def _alerts(r: Report, drawn: dict[str, Chart]) -> str:
    if not r.alerts:
        return "<p>No alert was raised in the period.</p>"
    rows = [[a.severity, a.subject, a.rule, fmt_ts(a.raised_ts), fmt_ts(a.acknowledged_ts),
             a.acknowledged_by or "–", fmt_dur(a.ack_s), fmt_ts(a.cleared_ts), a.message or "", a.note or "–"]
            for a in r.alerts]
    return _figure(drawn.get("alerts")) + table(
        ["Severity", "Subject", "Rule", "Raised", "Acknowledged", "By", "Time to ack", "Cleared", "Message",
         "Operator's note"], rows, numeric=(6,)) + (
        '<p class="note">Message: the alert\'s last wording while it was open. Operator\'s note: what the '
        "operator wrote when acknowledging it.</p>")


def _events(r: Report) -> str:
    """The events the forecasts included and what each one's expected crowd came from."""
    if not r.events:
        return ""
    src = {"history": lambda e: f"history: {e.occurrences} earlier occurrence(s) of {e.series}",
           "attendance": lambda e: f"arrival curve for {e.attendance:.0f} people"
                                   + ("" if e.attendance_given else " (site default)"),
           "none": lambda e: "not used by the forecast"}
    rows = [[e.event, e.series or "–", fmt_ts(e.start_ts), src.get(e.source, lambda e: e.source)(e)]
            for e in r.events]
    return ("<h3>Events the forecasts included</h3>"
            + table(["Event", "Series", "Start", "Expected crowd from"], rows))


def _staffing(r: Report, drawn: dict[str, Chart]) -> str:
    if r.staffing is None:
        return f"<p>{_e(r.staffing_note)}</p>" + _events(r)
    rows = [[s.zone_id, fmt_ts(s.slot_start_ts), fmt(s.peak_count), s.recommended,
             "–" if s.planned is None else s.planned, "–" if s.shortfall is None else s.shortfall]
            for s in r.staffing]
    return (_figure(drawn.get("staffing"))
            + table(["Zone", "Slot start", "Peak people", "Recommended", "Planned", "Short by"], rows,
                    numeric=(2, 3, 4, 5))
            + f'<p class="note">{_e(r.staffing_note)}</p>' + _events(r))


def _egress(r: Report, drawn: dict[str, Chart]) -> str:
    if not r.egress:
        return "<p>No zone with exits and readings: nothing to estimate.</p>"
    rows = [[e.zone_id, fmt(e.peak_count), fmt_ts(e.peak_ts), fmt(e.clearance_s, 0), fmt(e.target_s, 0),
             "yes" if e.within_target else "NO"] for e in r.egress]
    return (_figure(drawn.get("egress"))
            + table(["Zone", "Peak people", "at", "Clearance s", "Target s", "Within target"], rows,
                    numeric=(1, 3, 4))
            + "<p class=\"note\">Clearance: peak people over the exits' total width times the site's "
            "specific flow (crowdsafe.simulate.clearance, no travel time).</p>")


def _quality(r: Report, drawn: dict[str, Chart]) -> str:
    cams = table(["Camera", "Uptime %", "Gaps", "Longest gap", "Samples", "Dropped", "Model",
                  "Per-camera model"],
                 [[c.camera_id, fmt(c.uptime_pct), len(c.gaps),
                   fmt_dur(max((b - a for a, b in c.gaps), default=0.0)), c.samples, c.dropped, c.model,
                   f"yes (tuning {c.tuning})" if c.tuning else "yes" if c.tuned else "no (auto)"]
                  for c in r.cameras], numeric=(1, 2, 3, 4, 5))
    late = [f"{c.camera_id} from {fmt_ts(c.not_running[0][1])}" for c in r.cameras if c.not_running]
    started = (f'<p class="note">Running only part of the period: {_e("; ".join(late))}. Time before a '
               "camera first reported is not counted as an outage.</p>") if late else ""
    low = r.low_coverage
    coverage = (table(["Zone", "Lowest coverage %"], [[z.name, fmt(z.min_coverage_pct)] for z in low],
                      numeric=(1,))
                if low else "<p>Every zone with readings was fully covered by cameras.</p>")
    untuned = [c.camera_id for c in r.cameras if not c.tuned]
    models = (f"<p>{_e(', '.join(untuned))}: model <code>auto</code> (chosen from the calibration or per "
              "frame, not set for this camera in the site file, and no tuning).</p>" if untuned
              else "<p>Every camera has its model set or a tuning (<code>crowdsafe tune</code>) in the site "
                   "file.</p>")
    return (cams + started + _figure(drawn.get("uptime"))
            + '<p class="note">Uptime: share of the period covered by health rows saying "up". Samples and '
            "drops: frames counted and frames dropped (newer frame arrived first), from the health rows."
            "</p><h3>Zones not fully covered</h3>" + coverage
            + "<h3>Counts without a per-camera model</h3>" + models)


def _cameras(r: Report, drawn: dict[str, Chart]) -> str:
    parts = [_figure(drawn.get(f"camera-{o.camera_id}")) for o in r.overlays]
    body = "".join(parts) or "<p>No camera with a known image size.</p>"
    return body + (
        '<p class="note">The picture is the camera\'s people-free background (a temporal median '
        "checked to hold nobody), or blank until one is published; zones are coloured by their mean "
        "p/m² over the period. No frame is ever stored.</p>"
    )


def _actions(r: Report, drawn: dict[str, Chart]) -> str:
    """The audit trail: a count that changed because an operator captured a background shows here."""
    note = ('<p class="note">Capturing a background makes a camera subtract its density at that moment '
            "from every later count; it is refused while the counter or motion finds anyone in view, "
            "and can be undone.</p>")
    if not r.operator_actions:
        return note + "<p>No background was captured, undone or refused in the period.</p>"
    rows = [[fmt_ts(a["ts"]), a["actor"], a["action"].replace("_", " "), a["subject"], a["outcome"],
             a.get("detail") or ""] for a in r.operator_actions]
    return note + table(["Time", "By", "Action", "Camera", "Outcome", "Detail"], rows)



def _signoff(r: Report, drawn: dict[str, Chart]) -> str:
    """Filled from the request (or ``crowdsafe report --prepared-by ...``), else blank to sign on paper."""
    s = r.signoff
    rows = [("Prepared by", s.prepared_by), ("Reviewed by", s.reviewed_by), ("Date", s.date)]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td><td></td></tr>" for k, v in rows)
    return ('<table class="sign"><thead><tr><th></th><th>Name / date</th><th>Signature</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"
            '<p class="note">The reviewer confirms the period, the findings above and any actions '
            "agreed.</p>")


BUILDERS = {"summary": _summary, "zones": _zones, "gates": _gates, "alerts": _alerts, "staffing": _staffing,
            "egress": _egress, "quality": _quality, "cameras": _cameras, "actions": _actions,
            "signoff": _signoff}


def render_html(report: Report, generated_ts: float | None = None) -> str:
    """The whole report as one HTML document."""
    clock = Clock(report.timezone)
    drawn = charts(report, clock)
    token = _CLOCK.set(clock)
    try:
        sections = "".join(f'<section id="{key}"><h2>{i}. {title}</h2>{BUILDERS[key](report, drawn)}'
                           "</section>" for i, (key, title) in enumerate(SECTIONS, 1))
    finally:
        _CLOCK.reset(token)
    nav = "".join(f'<li><a href="#{key}">{title}</a></li>' for key, title in SECTIONS)
    generated = "" if generated_ts is None else f"; generated {clock.full(generated_ts)}"
    zone = "UTC" if clock.is_utc else f"{report.timezone} (UTC alongside)"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Event debrief: {_e(report.site_name)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>Event debrief: {_e(report.site_name)}</h1>"
        f"<p>{clock.full(report.start)} to {clock.full(report.end)} ({fmt_dur(report.end - report.start)}); "
        f"times in {_e(zone)}, 24-hour; charts at {report.resolution_s:g} s means{generated}.</p>"
        '<p class="note">crowdsafe measures crowds, never persons: every number here comes from density '
        "readings in the store, the same the API serves.</p></header>"
        f"<nav><ol>{nav}</ol></nav>{sections}</body></html>\n"
    )


def write_pdf(report: Report, path: Path) -> None:
    """A PDF of the summary numbers and every chart, one per page (matplotlib, no browser; the HTML's
    charts are hand-written SVG, the PDF's are drawn by ``crowdsafe.report.figures``)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    from crowdsafe.report.figures import charts as drawn_charts

    clock = Clock(report.timezone)
    token = _CLOCK.set(clock)
    try:
        lines = _pdf_lines(report)
    finally:
        _CLOCK.reset(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    with PdfPages(path, metadata={"Title": f"Event debrief: {report.site_name}"}) as pdf:
        page = Figure(figsize=(8.27, 11.69))
        page.text(0.06, 0.96, "\n".join(lines), va="top", family="monospace", fontsize=8)
        pdf.savefig(page)
        for chart in drawn_charts(report).values():
            pdf.savefig(chart.figure)
            chart.figure.clear()


def _pdf_lines(report: Report) -> list[str]:
    lines = [f"Event debrief: {report.site_name}", f"{fmt_ts(report.start)} to {fmt_ts(report.end)}", ""]
    for z in report.zones:
        lines.append(f"{z.name}: peak {fmt(z.peak_count)} people at {fmt_ts(z.peak_count_ts)}, "
                     f"peak {fmt(z.peak_density, 2)} p/m² at {fmt_ts(z.peak_density_ts)}")
    for g in report.gates:
        lines.append(f"{g.name}: in {fmt(g.total_in, 0)}, out {fmt(g.total_out, 0)}")
    for severity, n in report.alerts_by_severity.items():
        lines.append(f"alerts {severity}: {n}")
    for e in report.egress:
        lines.append(f"{e.zone_id}: clearance {fmt(e.clearance_s, 0)} s at peak "
                     f"(target {fmt(e.target_s, 0)} s)")
    s = report.signoff
    lines += ["", f"Prepared by: {s.prepared_by or '_' * 30}", f"Reviewed by: {s.reviewed_by or '_' * 30}",
              f"Date:        {s.date or '_' * 30}"]
    return lines


def write_report(report: Report, out: Path, pdf: Path | None = None,
                 generated_ts: float | None = None) -> int:
    """Write the HTML (and the PDF if asked); returns the HTML's size in bytes."""
    text = render_html(report, generated_ts)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if pdf is not None:
        write_pdf(report, pdf)
    return len(text.encode("utf-8"))
