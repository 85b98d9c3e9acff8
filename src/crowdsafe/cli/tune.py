"""``crowdsafe tune``: commission one camera from a few annotated frames of its own source.

Counts the chosen frames with both models once, then leaves the choice to
``counting.tuning.fit_tuning`` (cross-validation on those frames only); a second pass counts the
range's other annotated frames with the chosen setting only, for the interval
(``counting.tuning.calibrate_interval``). Frames are decoded, counted and dropped one by one;
only the coarse density maps stay in memory until the fit, and nothing but the tuning file is
written. With ``--finetune`` every annotated frame goes once through one graph for both models
and the refit's features (``training.camera.CommissionPass``), and no second pass is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import cv2
import numpy as np
import typer

from crowdsafe.cli import options as opt
from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, fail, user_errors
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.finetuned import LayersRef, save_layers
from crowdsafe.counting.tuning import CameraTuning, calibrate_interval, fit_tuning, save_tuning
from crowdsafe.evaluation.dataset import DatasetError
from crowdsafe.evaluation.site import folder_images
from crowdsafe.measure.background import encode_jpeg

if TYPE_CHECKING:
    from crowdsafe.training.camera import FrameSums

MODELS = ("dense", "sparse")
#: The model whose output layer ``--finetune`` refits: a camera worth fine-tuning is a busy one.
FINETUNE_BASE = "dense"


def spread(frames: list[int], at_most: int) -> list[int]:
    """At most ``at_most`` frames evenly spread over ``frames`` (all of them if fewer)."""
    if at_most <= 0 or len(frames) <= at_most:
        return frames
    picks = np.linspace(0, len(frames) - 1, at_most).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def decoded(video: str, wanted: list[int],
            size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray, tuple[int, int]]]:
    """The ``wanted`` frames of ``video`` (index, image at ``size``, the source's own size), in order.

    ``video`` is a video file, or an image folder whose images in name order are its frames.
    """
    files = folder_images(video)
    for index, image in (_from_folder(files, wanted) if files is not None else _from_video(video, wanted)):
        source = (image.shape[1], image.shape[0])  # the labels' pixels
        if source != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        yield index, image, source


def _from_folder(files: list[Path], wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    from crowdsafe.sources.images import read_image

    for index in wanted:
        if index >= len(files):
            return
        yield index, read_image(files[index])


def _from_video(video: str, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise DatasetError(f"{video}: cannot open the camera's video (tune needs a video file or an "
                           "image folder; give --source for a recording of a live camera)")
    try:
        want, index = set(wanted), -1
        while wanted and index < wanted[-1]:
            ok, image = cap.read()
            index += 1
            if not ok:
                break
            if index in want:
                yield index, image
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
                    "video frames are near copies, so more frames add time, not information. "
                    "--finetune counts every annotated frame of the range (one pass).")] = 40,
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
    source: Annotated[str | None, typer.Option(
        "--source", help="Read the annotated frames from this recording of the camera (a video file, "
                         "or an image folder whose images in name order are the frames) instead of "
                         "the camera's own source. --labels may then be keyed by image file name.",
        show_default=False)] = None,
    finetune: Annotated[bool, typer.Option(
        "--finetune", help="Also refit the dense model's output layer on every annotated frame of the "
                           "range (NumPy, on CPU; the network before it runs once per frame) and "
                           "let cross-validation choose it only where it beats the shipped "
                           "settings. Every annotated frame of the range goes once through one graph for "
                           "both models and the refit (int8 under OpenVINO; --engine and --precision "
                           "do not apply). Writes the layer next to --out (<out stem>.layers.npz).")] = False,
    engine: opt.EngineOption = opt.EngineChoice.auto,
    precision: opt.AccuracyPrecisionOption = None,
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

    if source is not None and "://" not in source and not Path(source).exists():
        raise fail(f"--source {source}: no such file or folder")
    layers_path = out.with_name(f"{out.stem}.layers.npz")

    with user_errors():
        _, geometry, truth, span, video = annotated_camera(site_file, camera, labels, frames, source)
        annotated = [k for k in span if k in truth]
        if not annotated:
            raise DatasetError(f"--frames {frames}: no frame in that range is annotated in {labels}")
        # With --finetune every annotated frame of the range goes once through one graph that
        # gives the shipped models' maps and the refit's features alike: every candidate is then
        # scored on the same frames, and the interval needs no second pass.
        chosen = annotated if finetune else spread(annotated, max_frames)
        width, height = geometry.cameras[camera].ground_map.image_size
        maps: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
        counted: list[int] = []
        source_size = (width, height)
        sums, one_pass, counters = None, None, {}
        if finetune:
            from crowdsafe.training.camera import CommissionPass, FrameSums, frame_target

            sums, one_pass = FrameSums(), CommissionPass(threads)
            label = f"counting {len(chosen)} frames of {camera}, with features ({one_pass.precision})"
        else:
            spec = opt.engine_spec(engine, precision, threads)
            make = opt.counter_factory(ctx)
            counters = {m: make(replace(spec, model=m)) for m in MODELS}
            label = f"counting {len(chosen)} frames of {camera}"
        started = time.perf_counter()
        with progress_bar(label, len(chosen)) as advance:
            for index, image, size in decoded(video, chosen, (width, height)):
                source_size = size
                if sums is not None and one_pass is not None:
                    seen = one_pass(image)
                    for m in MODELS:
                        maps[m].append(seen.maps[m])
                    points = scaled_points(truth[index], size, (width, height))
                    sums.add(seen.features, frame_target(points, height, width), len(truth[index]))
                else:
                    for m in MODELS:
                        maps[m].append(counters[m].count(image).density)
                counted.append(index)
                keep(keep_frames, camera, index, image)
                del image  # frames are never kept unless asked
                advance()
        if len(counted) < len(chosen):
            raise DatasetError(f"{video}: only {len(counted)} of the {len(chosen)} frames could be read")
        people = [float(len(truth[k])) for k in counted]
        points_counted = [truth[k] for k in counted]
        tuning = fit_tuning(camera, maps, people, counted, folds=folds, level=level,
                            points=points_counted, image_size=source_size)
        if sums is not None and one_pass is not None:
            tuning = add_finetuned(tuning, sums, points_counted, maps, source_size, layers_path,
                                   folds=folds, level=level, precision=one_pass.precision,
                                   seconds=time.perf_counter() - started)
        done = set(counted)
        rest = [k for k in annotated if k not in done]
        room = interval_frames - len(counted) if interval_frames else len(rest)
        more = spread(rest, room) if room > 0 else []
        pairs: list[tuple[float, float]] = []
        if more:
            with progress_bar(f"counting {len(more)} more frames for the interval", len(more)) as advance:
                for index, image, _ in decoded(video, more, (width, height)):
                    density = counters[tuning.model].count(image).density  # never with --finetune
                    keep(keep_frames, camera, index, image)
                    del image  # frames are never kept unless asked
                    pairs.append((float(tuning.apply(density).sum(dtype=np.float64)),
                                  float(len(truth[index]))))
                    advance()
            tuning = calibrate_interval(tuning, pairs, more, level=level)
    if tuning.layers is None:
        layers_path.unlink(missing_ok=True)  # written for a candidate that lost
    console = stdout_console()
    console.print(f"camera {camera}: {len(counted)} annotated frames of {span.start}:{span.stop}:{span.step} "
                  f"(mean {np.mean(people):.2f} people), {folds}-block cross-validation", highlight=False)
    for c in sorted(tuning.candidates, key=lambda c: c.cv_mae):
        mark = "*" if c.same_setting(tuning) else " "
        switch = "on " if c.background else "off"
        what = f"fine-tuned output layer (ridge {c.ridge:g})" if c.finetuned else \
            f"background {switch}  gain {c.gain:5.3f} {'fitted' if c.gain_fitted else 'none  '}"
        console.print(f" {mark} {c.model:6s} {what}  "
                      f"cross-validated MAE {c.cv_mae:.2f}/frame, bias {c.cv_bias:+.2f}, "
                      f"GAME(2) {c.cv_game:.2f}", highlight=False)
    lo, hi = tuning.count_interval(float(np.mean(people)))
    if tuning.layers is not None:
        setting = (f"{tuning.model} with its output layer fine-tuned on {len(annotated)} frames "
                   f"({layers_path.name}, ridge {tuning.finetune.get('ridge', 0):g})")
    else:
        setting = f"{tuning.model}, background {'on' if tuning.background else 'off'}, gain {tuning.gain:.3f}"
    fitted = f"fitted on {len(tuning.calibration)} out-of-block frames" if tuning.layers is not None else \
        f"fitted on {len(tuning.calibration)} frames, {len(counted)} of them out-of-block"
    console.print(f"chosen: {setting}; expected error {tuning.cv_mae:.2f} people/frame; {level:.0%} interval "
                  f"at {np.mean(people):.1f} people: {lo:.1f} to {hi:.1f} "
                  f"({fitted}; coverage there {tuning.cv_coverage:.0%})",
                  highlight=False)
    try:
        save_tuning(tuning, out)
    except OSError as exc:
        raise fail(f"{out}: cannot write ({exc.strerror or exc})") from None
    console.print(f"written to {out}", highlight=False)


def scaled_points(points: np.ndarray, source: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Head points in the pixels of the frame as counted (the labels are in the source's)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2).copy()
    pts[:, 0] *= size[0] / source[0]
    pts[:, 1] *= size[1] / source[1]
    return pts


def add_finetuned(tuning: CameraTuning, sums: FrameSums, points: list[np.ndarray],
                  maps: dict[str, list[np.ndarray]], image_size: tuple[int, int], layers_path: Path, *,
                  folds: int, level: float, precision: str, seconds: float) -> CameraTuning:
    """The fine-tuned candidates scored beside the shipped settings, on the same frames (every
    annotated frame of the range, in the same blocks); the tuning of the winner."""
    from crowdsafe.counting.tuning import region_truth, with_finetuned
    from crowdsafe.training.camera import fit_candidates, int8_scale

    candidates = fit_candidates(sums, folds)
    shape = maps[FINETUNE_BASE][0].shape
    regions_truth = np.stack([region_truth(p, shape, image_size) for p in points])
    tuned, winner = with_finetuned(
        tuning, FINETUNE_BASE, [(c.layer.ridge, c.predicted, c.predicted_regions) for c in candidates],
        sums.people, tuning.frames, regions_truth, level=level, folds=folds)
    if winner is None:
        return tuned
    layer = candidates[winner].layer
    try:
        digest = save_layers(layers_path, layer.layers())
    except OSError as exc:
        raise fail(f"{layers_path}: cannot write ({exc.strerror or exc})") from None
    ref = LayersRef(str(layers_path), digest, FINETUNE_BASE, (("output_layer", int8_scale(sums)),))
    info = {"layers": sorted(layer.layers()), "ridge": layer.ridge, "frames": len(sums),
            "feature_precision": precision, "seconds": round(seconds, 1)}
    return replace(tuned, layers=ref, finetune=info)
