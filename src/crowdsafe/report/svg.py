"""A few SVG drawing primitives for the debrief's charts, written as text.

Drawing with matplotlib cost 0.3-0.6 s of CPU per chart (layout, ticks, text metrics): an hour's
report took 7 s on an idle machine and 18-48 s beside the counting engine, whose threads the API
yields to. The charts are simple (lines, bands, bars, steps on a time axis), so they are written
straight as SVG: milliseconds per chart, no font metrics, and the page stays script-free.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from crowdsafe.report.clock import Clock

FONT = 'font-family="system-ui,sans-serif"'
GRID = "#e3e3e3"
#: Chart width, the left margin (y labels) and the right one (legend), in pixels.
WIDTH, LEFT, RIGHT = 900.0, 62.0, 200.0
_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def esc(text: object) -> str:
    return html.escape(str(text))


def num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def nice_step(span: float, target: int = 5) -> float:
    """1, 2 or 5 times a power of ten, giving about ``target`` intervals over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def time_ticks(start: float, end: float, clock: Clock, most: int = 9) -> list[tuple[float, str]]:
    """Ticks on whole local minutes/hours (24-hour labels), at most ``most`` of them."""
    span = end - start
    step = next((s for s in _STEPS_S if span / s <= most), _STEPS_S[-1])
    offset = clock.offset_s(start)
    first = math.ceil((start + offset) / step) * step - offset
    ticks = []
    t = first
    while t <= end + 1e-6:
        local = clock.local(t)
        ticks.append((t, f"{local:%d %b %H:%M}" if step >= 86400 else f"{local:%H:%M}"))
        t += step
    return ticks


@dataclass
class Panel:
    """A data rectangle inside an SVG: maps data to pixels and collects the elements drawn."""

    left: float
    top: float
    width: float
    height: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    parts: list[str] = field(default_factory=list)
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (label, colour, kind)

    def x(self, v: float) -> float:
        a, b = self.xlim
        return self.left + (v - a) / ((b - a) or 1.0) * self.width

    def y(self, v: float) -> float:
        a, b = self.ylim
        return self.top + self.height - (v - a) / ((b - a) or 1.0) * self.height

    def _points(self, xs: Sequence[float], ys: Sequence[float]) -> list[list[str]]:
        runs: list[list[str]] = [[]]
        for xv, yv in zip(xs, ys, strict=False):
            if yv is None or not math.isfinite(yv):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{self.x(xv):.1f},{self.y(yv):.1f}")
        return [r for r in runs if r]

    def line(self, xs: Sequence[float], ys: Sequence[float], colour: str, label: str | None = None,
             width: float = 1.4, dash: str | None = None) -> None:
        style = f' stroke-dasharray="{dash}"' if dash else ""
        for run in self._points(xs, ys):
            self.parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                              f'stroke-width="{width}"{style}/>')
        if label:
            self.legend.append((label, colour, f"line:{dash or ''}"))

    def step(self, xs: Sequence[float], ys: Sequence[float], end: float, colour: str,
             label: str | None = None, dash: str | None = None) -> None:
        """Each value holds until the next x, the last until ``end`` (so one slot is drawn too)."""
        px: list[float] = []
        py: list[float] = []
        for i, (xv, yv) in enumerate(zip(xs, ys, strict=True)):
            nxt = xs[i + 1] if i + 1 < len(xs) else end
            px += [xv, nxt]
            py += [yv, yv]
        self.line(px, py, colour, label, dash=dash, width=1.8)

    def band(self, xs: Sequence[float], lo: Sequence[float], hi: Sequence[float], colour: str,
             label: str | None = None, opacity: float = 0.25) -> None:
        pts = [(xv, a, b) for xv, a, b in zip(xs, lo, hi, strict=False)
               if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
        if len(pts) < 2:
            return
        upper = " ".join(f"{self.x(xv):.1f},{self.y(b):.1f}" for xv, _, b in pts)
        lower = " ".join(f"{self.x(xv):.1f},{self.y(a):.1f}" for xv, a, _ in reversed(pts))
        self.parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="{opacity}" '
                          'stroke="none"/>')
        if label:
            self.legend.append((label, colour, "box"))

    def hline(self, value: float, colour: str, label: str | None = None, dash: str | None = "5 3") -> None:
        if not self.ylim[0] <= value <= self.ylim[1]:
            return
        y = self.y(value)
        self._rule(self.left, self.left + self.width, y, y, colour, 1.0, label, dash)

    def vline(self, value: float, colour: str, label: str | None = None, dash: str | None = "5 3") -> None:
        x = self.x(value)
        self._rule(x, x, self.top, self.top + self.height, colour, 1.2, label, dash)

    def _rule(self, x1: float, x2: float, y1: float, y2: float, colour: str, width: float,
              label: str | None, dash: str | None) -> None:
        """One reference line across the panel, with its legend entry (hline and vline share it)."""
        style = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{colour}" '
                          f'stroke-width="{width:g}"{style}/>')
        if label:
            self.legend.append((label, colour, f"line:{dash or ''}"))

    def rect(self, x0: float, x1: float, y0: float, y1: float, colour: str, title: str | None = None) -> None:
        """A rectangle in data coordinates (clipped to the panel)."""
        a, b = sorted((max(self.x(x0), self.left), min(self.x(x1), self.left + self.width)))
        c, d = sorted((self.y(y0), self.y(y1)))
        if b - a <= 0:
            return
        tip = f"<title>{esc(title)}</title>" if title else ""
        self.parts.append(f'<rect x="{a:.1f}" y="{c:.1f}" width="{b - a:.1f}" height="{d - c:.1f}" '
                          f'fill="{colour}" shape-rendering="crispEdges">{tip}</rect>')

    def text(self, x: float, y: float, text: str, anchor: str = "start", size: int = 11,
             colour: str = "#333", weight: str = "normal") -> None:
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                          f'fill="{colour}" font-weight="{weight}">{esc(text)}</text>')

    def y_axis(self, label: str, ticks: Sequence[tuple[float, str]] | None = None) -> None:
        if ticks is None:
            lo, hi = self.ylim
            step = nice_step(hi - lo)
            ticks = [(v, num(v)) for k in range(math.floor(lo / step), math.ceil(hi / step) + 1)
                     if lo - 1e-9 <= (v := k * step) <= hi + 1e-9]
        for v, text in ticks:
            y = self.y(v)
            self.parts.append(f'<line x1="{self.left:.1f}" x2="{self.left + self.width:.1f}" y1="{y:.1f}" '
                              f'y2="{y:.1f}" stroke="{GRID}"/>')
            self.text(self.left - 5, y + 4, text, "end", 10)
        cy = self.top + self.height / 2
        self.parts.append(f'<text x="{self.left - 40:.1f}" y="{cy:.1f}" font-size="11" text-anchor="middle" '
                          f'fill="#333" transform="rotate(-90 {self.left - 40:.1f} {cy:.1f})">'
                          f"{esc(label)}</text>")

    def time_axis(self, clock: Clock, labels: bool = True) -> None:
        for t, text in time_ticks(self.xlim[0], self.xlim[1], clock):
            x = self.x(t)
            self.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top:.1f}" '
                              f'y2="{self.top + self.height:.1f}" stroke="{GRID}"/>')
            if labels:
                self.text(x, self.top + self.height + 14, text, "middle", 10)

    def frame(self) -> None:
        self.parts.append(f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.width:.1f}" '
                          f'height="{self.height:.1f}" fill="none" stroke="#999"/>')

    def draw_legend(self) -> None:
        """Legend entries stacked to the right of the panel (``RIGHT`` pixels), never over the data."""
        x = self.left + self.width + 10
        for i, (label, colour, kind) in enumerate(self.legend):
            y = self.top + 10 + 14 * i
            if kind == "box":
                self.parts.append(f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="14" height="9" fill="{colour}" '
                                  'fill-opacity="0.6"/>')
            else:
                dash = kind.split(":", 1)[1]
                style = f' stroke-dasharray="{dash}"' if dash else ""
                self.parts.append(f'<line x1="{x:.1f}" x2="{x + 14:.1f}" y1="{y - 4:.1f}" y2="{y - 4:.1f}" '
                                  f'stroke="{colour}" stroke-width="2"{style}/>')
            self.text(x + 18, y, label, size=10)

    def svg(self) -> str:
        return "".join(self.parts)


def document(width: float, height: float, title: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" {FONT}><title>{esc(title)}</title>'
            f'<rect width="100%" height="100%" fill="white"/>{body}</svg>')
