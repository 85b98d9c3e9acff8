"""``crowdsafe tune``: commission one camera from a few annotated frames of its own source.

Counts the chosen frames with both models once, then leaves the choice to
``counting.tuning.fit_tuning`` (cross-validation on those frames only); a second pass counts the
range's other annotated frames with the chosen setting only, for the interval
(``counting.tuning.calibrate_interval``). Frames are decoded, counted and dropped one by one;
only the coarse density maps stay in memory until the fit, and nothing but the tuning file is
written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from crowdsafe.cli import options as opt
from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, fail, user_errors
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.tuning import calibrate_interval, fit_tuning, save_tuning
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.measure.background import encode_jpeg

MODELS = ("dense", "sparse")


def spread(frames: list[int], at_most: int) -> list[int]:
    """At most ``at_most`` frames evenly spread over ``frames`` (all of them if fewer)."""
    if at_most <= 0 or len(frames) <= at_most:
        return frames
    picks = np.linspace(0, len(frames) - 1, at_most).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def decoded(video: str, wanted: list[int],
            size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray, tuple[int, int]]]:
    """The ``wanted`` frames of ``video`` (index, image at ``size``, the source's own size), in order."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise DatasetError(f"{video}: cannot open the camera's video (tune needs a video file source)")
    try:
        want, index = set(wanted), -1
        while wanted and index < wanted[-1]:
            ok, image = cap.read()
            index += 1
            if not ok:
                break
            if index in want:
                source = (image.shape[1], image.shape[0])  # the labels' pixels
                if source != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                yield index, image, source
    finally:
        cap.release()


def keep(folder: Path | None, camera: str, index: int, image: np.ndarray) -> None:
    """Write one counted frame where ``--keep-frames`` asked for it (nowhere otherwise)."""
    if folder is None:
        return
    path = folder / f"{camera}-{index:06d}.jpg"
    try:
        path.write_bytes(encode_jpeg(image, quality=90))
    except OSError as exc:
        raise fail(f"{path}: cannot write ({exc.strerror or exc})") from None


def tune(
    ctx: typer.Context,
    site_file: opt.SiteFileArg,
    camera: opt.VideoCameraOption,
    labels: Annotated[Path, typer.Option(
        help="Annotated head points per frame of the camera's source: "
             "{\"<frame>\": {\"points\": [[x, y], ...]}} (the crowd sets' point format).", exists=True,
        dir_okay=False, show_default=False)],
    frames: Annotated[str, typer.Option(
        help="START:STOP[:STEP] frame indices to tune on (STOP exclusive); nothing else is looked at.",
        show_default=False)],
    out: Annotated[Path, typer.Option(help="Tuning file to write (JSON).", dir_okay=False,
                                      show_default=False)],
    max_frames: Annotated[int, typer.Option(
        min=0, help="Count at most this many of those frames, evenly spread (0: all). Neighbouring "
                    "video frames are near copies, so more frames add time, not information.")] = 40,
    interval_frames: Annotated[int, typer.Option(
        min=0, help="Fit the interval on at most this many annotated frames of the range (0: all), "
                    "the ones beyond --max-frames counted once more with the chosen setting only. "
                    "The conformal quantile's finite-sample margin shrinks as frames are added.")] = 0,
    keep_frames: Annotated[Path | None, typer.Option(
        help="Also write every frame it counts, as JPEG, into this folder (to check the labels "
             "against). Off by default: the frames show people; keep and delete them under your "
             "data-protection rules.", file_okay=False, show_default=False)] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation blocks.")] = 5,
    level: Annotated[float, typer.Option(min=0.5, max=0.99, help="Interval level.")] = 0.9,
    engine: opt.EngineOption = opt.EngineChoice.auto,
    precision: opt.PrecisionOption = opt.PrecisionChoice.fp32,
    threads: opt.ThreadsOption = None,
) -> None:
    """Choose model, background subtraction and gain for one camera from annotated frames."""
    check_out_folder("--out", out)
    if keep_frames is not None:
        try:
            keep_frames.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"--keep-frames {keep_frames}: cannot create ({exc.strerror or exc})") from None
    from crowdsafe.cli.site import annotated_camera

    with user_errors():
        site, geometry, truth, span = annotated_camera(site_file, camera, labels, frames)
        annotated = [k for k in span if k in truth]
        if not annotated:
            raise DatasetError(f"--frames {frames}: no frame in that range is annotated in {labels}")
        chosen = spread(annotated, max_frames)
        width, height = geometry.cameras[camera].ground_map.image_size
        spec = opt.engine_spec(engine, precision, threads)
        make = opt.counter_factory(ctx)
        counters = {m: make(replace(spec, model=m)) for m in MODELS}
        video = site.resolve_source(site.camera(camera))
        maps: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
        counted: list[int] = []
        source_size = (width, height)
        with progress_bar(f"counting {len(chosen)} frames of {camera}", len(chosen)) as advance:
            for index, image, size in decoded(video, chosen, (width, height)):
                source_size = size
                for m in MODELS:
                    maps[m].append(counters[m].count(image).density)
                keep(keep_frames, camera, index, image)
                del image  # frames are never kept unless asked
                counted.append(index)
                advance()
        if len(counted) < len(chosen):
            raise DatasetError(f"{video}: only {len(counted)} of the {len(chosen)} frames could be read")
        people = [float(len(truth[k])) for k in counted]
        tuning = fit_tuning(camera, maps, people, counted, folds=folds, level=level,
                            points=[truth[k] for k in counted], image_size=source_size)
        done = set(counted)
        rest = [k for k in annotated if k not in done]
        room = interval_frames - len(counted) if interval_frames else len(rest)
        more = spread(rest, room) if room > 0 else []
        pairs: list[tuple[float, float]] = []
        if more:
            with progress_bar(f"counting {len(more)} more frames for the interval", len(more)) as advance:
                for index, image, _ in decoded(video, more, (width, height)):
                    density = counters[tuning.model].count(image).density
                    keep(keep_frames, camera, index, image)
                    del image  # frames are never kept unless asked
                    pairs.append((float(tuning.apply(density).sum(dtype=np.float64)),
                                  float(len(truth[index]))))
                    advance()
            tuning = calibrate_interval(tuning, pairs, more, level=level)
    console = stdout_console()
    console.print(f"camera {camera}: {len(counted)} annotated frames of {span.start}:{span.stop}:{span.step} "
                  f"(mean {np.mean(people):.2f} people), {folds}-block cross-validation", highlight=False)
    for c in sorted(tuning.candidates, key=lambda c: c.cv_mae):
        chosen_one = (c.model, c.background, c.gain) == (tuning.model, tuning.background, tuning.gain)
        mark = "*" if chosen_one else " "
        switch = "on " if c.background else "off"
        console.print(f" {mark} {c.model:6s} background {switch}  gain {c.gain:5.3f} "
                      f"{'fitted' if c.gain_fitted else 'none  '}  "
                      f"cross-validated MAE {c.cv_mae:.2f}/frame, bias {c.cv_bias:+.2f}, "
                      f"GAME(2) {c.cv_game:.2f}", highlight=False)
    lo, hi = tuning.count_interval(float(np.mean(people)))
    console.print(f"chosen: {tuning.model}, background {'on' if tuning.background else 'off'}, gain "
                  f"{tuning.gain:.3f}; expected error {tuning.cv_mae:.2f} people/frame; {level:.0%} interval "
                  f"at {np.mean(people):.1f} people: {lo:.1f} to {hi:.1f} "
                  f"(fitted on {len(tuning.calibration)} frames, {len(counted)} of them out-of-block; "
                  f"coverage there {tuning.cv_coverage:.0%})",
                  highlight=False)
    try:
        save_tuning(tuning, out)
    except OSError as exc:
        raise fail(f"{out}: cannot write ({exc.strerror or exc})") from None
    console.print(f"written to {out}", highlight=False)
