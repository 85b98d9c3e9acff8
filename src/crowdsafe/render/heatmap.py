"""Density heatmaps over a frame, with a labelled colour bar and the total count.

Why and how: docs/design-notes.md, ``crowdsafe.render.heatmap``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from crowdsafe.counting.counter import DensityResult

#: Pixels on each side of the area the colour bar reports densities for.
AREA_SIDE = 100
UNIT_LABEL = f"people / {AREA_SIDE}x{AREA_SIDE} px"
#: Smallest top of the colour scale (people per area): keeps near-empty scenes from showing
#: noise stretched to full red.
MIN_SCALE = 0.5
COLORMAP = cv2.COLORMAP_TURBO
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def per_area(result: DensityResult, height: int, width: int) -> np.ndarray:
    """People inside the AREA_SIDE x AREA_SIDE pixel window centred on each pixel.

    A windowed sum rather than the raw cell value scaled up: the network puts each person
    into a few peaked cells, and scaling a peak to 100x100 px would claim dozens of people
    in a patch holding two.
    """
    per_pixel = np.maximum(result.density, 0) / float(result.cell * result.cell)
    per_pixel = cv2.resize(per_pixel, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.boxFilter(per_pixel, -1, (AREA_SIDE, AREA_SIDE), normalize=False,
                         borderType=cv2.BORDER_CONSTANT)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float,
          thickness: int) -> None:
    """White text with a dark outline: readable on any colour of the map."""
    cv2.putText(canvas, text, origin, _FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _colour_bar(canvas: np.ndarray, top: float, scale: float, thickness: int) -> None:
    """A vertical bar at the right edge with three ticks (0, half, top) and its unit."""
    h, w = canvas.shape[:2]
    bar_w = max(10, w // 50)
    bar_h = max(40, int(h * 0.5))
    (label_w, text_h), _ = cv2.getTextSize(f"{top:.1f}", _FONT, scale, thickness)
    x1 = w - label_w - 12
    x0 = x1 - bar_w
    y0 = (h - bar_h) // 2
    ramp = np.linspace(255, 0, bar_h, dtype=np.float32).astype(np.uint8)[:, None]
    bar = cv2.applyColorMap(np.repeat(ramp, bar_w, axis=1), COLORMAP)
    canvas[y0:y0 + bar_h, x0:x1] = bar
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y0 + bar_h - 1), (255, 255, 255), 1)
    for fraction in (1.0, 0.5, 0.0):
        y = y0 + round((1 - fraction) * (bar_h - 1))
        cv2.line(canvas, (x1, y), (x1 + 4, y), (255, 255, 255), 1)
        _text(canvas, f"{top * fraction:.1f}", (x1 + 6, y + text_h // 2), scale, thickness)
    (unit_w, _), _ = cv2.getTextSize(UNIT_LABEL, _FONT, scale, thickness)
    unit_x = max(2, min(x0, w - unit_w - 12))  # room for the text outline
    _text(canvas, UNIT_LABEL, (unit_x, y0 + bar_h + text_h + 10), scale, thickness)


def render_heatmap(image_bgr: np.ndarray, result: DensityResult, *,
                   scale_max: float | None = None, opacity: float = 0.6) -> np.ndarray:
    """The frame with the density blended over it, a colour bar and the total count.

    Colour opacity grows with density, so empty floor keeps its real look and the eye goes
    to where people are. ``scale_max`` fixes the top of the scale (people per area), which
    keeps frames of one video comparable; by default each frame uses its own maximum.
    """
    h, w = image_bgr.shape[:2]
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    image_bgr = image_bgr[:, :, :3]
    density = per_area(result, h, w)
    top = scale_max if scale_max is not None else max(float(density.max()), MIN_SCALE)
    level = np.clip(density / top, 0.0, 1.0)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), COLORMAP)
    alpha = (opacity * np.sqrt(level))[:, :, None]
    canvas = (image_bgr * (1 - alpha) + colours * alpha).astype(np.uint8)
    scale = max(0.4, min(h, w) / 900)
    thickness = 1 if scale < 0.8 else 2
    _colour_bar(canvas, top, scale, thickness)
    (_, text_h), _ = cv2.getTextSize("0", _FONT, scale * 1.4, thickness + 1)
    _text(canvas, f"count: {result.count:.1f}", (8, 8 + text_h), scale * 1.4, thickness + 1)
    return canvas


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write PNG or JPEG (by extension); OSError with the path when the write fails.

    ``cv2.imwrite`` only returns False on failure, which is too easy to ignore, so encoding
    and writing are done here where the failure can be reported.
    """
    suffix = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if suffix in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(suffix, image, params)
    except cv2.error:
        ok = False
    if not ok:
        raise OSError(f"{path}: cannot encode an image with extension {suffix!r}")
    path.write_bytes(encoded.tobytes())
    return path
