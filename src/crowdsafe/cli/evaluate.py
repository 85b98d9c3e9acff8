"""``crowdsafe eval``: accuracy and speed of the counter on labelled image folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, fail, user_errors, write_out
from crowdsafe.cli.model_option import ModelChoiceOpt, ModelOption
from crowdsafe.cli.options import (
    AccuracyPrecisionOption,
    EngineChoice,
    EngineOption,
    ThreadsOption,
    announce_precision,
    counter_factory,
    engine_spec,
)
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.choice import make_model_counter
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.engines import spec_for
from crowdsafe.counting.scale import load_person_heights, normalised_counter, person_px_per_row
from crowdsafe.counting.tuning import TunedCounter, load_tuning
from crowdsafe.evaluation.dataset import Dataset, find_datasets
from crowdsafe.evaluation.runner import DatasetResult, evaluate_dataset
from crowdsafe.evaluation.video import evaluate_video, is_video
from crowdsafe.sources import parse_interval


def _person_rows(heights_file: Path | None, site_file: Path | None,
                 camera: str | None) -> np.ndarray | None:
    """Per-row person heights from a hand calibration file or a site camera; None without."""
    if heights_file is not None and site_file is not None:
        raise fail("give --person-heights or --site/--camera, not both")
    if heights_file is not None:
        try:
            return load_person_heights(heights_file)[1]
        except ValueError as exc:
            raise fail(str(exc)) from None
    if site_file is None:
        if camera is not None:
            raise fail("--camera needs --site")
        return None
    from crowdsafe.cli.site import site_geometry
    from crowdsafe.config.site import load_site

    geometry = site_geometry(load_site(site_file))
    ids = list(geometry.cameras)
    if camera is None and len(ids) == 1:
        camera = ids[0]
    if camera not in geometry.cameras:
        raise fail(f"--camera {camera!r}: the site has {', '.join(ids)}")
    ground = geometry.cameras[camera].ground_map
    try:
        return person_px_per_row(ground.person_px, ground.image_size[1])
    except ValueError as exc:
        raise fail(f"camera {camera}: {exc} (its calibration needs a pose for person heights)") from None


def _unique(datasets: list[Dataset]) -> dict[str, Dataset]:
    """Datasets by folder name, the key used in the JSON; two folders with one name clash."""
    named: dict[str, Dataset] = {}
    for dataset in datasets:
        if dataset.name in named:
            if named[dataset.name].root.resolve() == dataset.root.resolve():
                continue
            raise fail(f"two datasets are named {dataset.name!r} ({named[dataset.name].root} "
                       f"and {dataset.root}); rename one folder")
        named[dataset.name] = dataset
    return named


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def results_table(results: list[DatasetResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("dataset", "n", "MAE", "RMSE", "bias", "rel. err", "corr", "90% cov.",
                   "dense share", "s/image"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for result in results:
        m = result.metrics
        rel = "n/a" if m.rel_err is None else f"{m.rel_err * 100:.1f} %"
        cov = "n/a" if m.coverage is None else f"{m.coverage * 100:.0f} %"
        table.add_row(result.dataset, str(m.n), _fmt(m.mae), _fmt(m.rmse), _fmt(m.bias), rel,
                      _fmt(m.corr, 3), cov, f"{dense_share(result) * 100:.0f} %",
                      _fmt(m.sec_per_image))
    return table


def dense_share(result: DatasetResult) -> float:
    """Share of images the dense model counted (1 or 0 unless ``--model auto``)."""
    return sum(image.model == "dense" for image in result.images) / max(len(result.images), 1)


def results_json(results: list[DatasetResult], engine: str, precision: str,
                 model: str = "dense") -> dict[str, Any]:
    return {"datasets": {r.dataset: {**r.metrics.as_dict(), "dense_share": dense_share(r)}
                         for r in results},
            "engine": engine, "precision": precision, "model": model}


def evaluate(
    ctx: typer.Context,
    data: Annotated[list[Path], typer.Argument(
        help="Dataset folders holding labels.json, or parent folders whose sub-folders do; or "
             "videos with per-frame counts in <stem>_counts.csv beside them.",
        show_default=False)],
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the metrics as JSON to this file.", show_default=False)
    ] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Use only the first N images of each dataset (natural name order).",
        show_default=False)] = None,
    engine: EngineOption = EngineChoice.auto,
    precision: AccuracyPrecisionOption = None,
    threads: ThreadsOption = None,
    model: ModelOption = ModelChoiceOpt.dense,
    every: Annotated[str, typer.Option(
        "--every", help="Videos: score one frame per interval (e.g. 1s, 500ms).")] = "1s",
    person_heights: Annotated[Path | None, typer.Option(
        help="Hand calibration of the camera: JSON {\"image_height\": H, \"points\": [[foot "
             "row, person height px], ...]}. Chooses the model (auto) and normalises scale.",
        exists=True, dir_okay=False, show_default=False)] = None,
    site_file: Annotated[Path | None, typer.Option(
        "--site", help="Site file whose camera (--camera) calibration gives person heights.",
        exists=True, dir_okay=False, show_default=False)] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id in --site.", show_default=False)
                      ] = None,
    scale_normalise: Annotated[bool, typer.Option(
        help="With person heights: resize bands of rows so people appear at the model's "
             "trained size (sparse model only).")] = True,
    tuning_file: Annotated[Path | None, typer.Option(
        "--tuning", help="Count as this commissioned camera: the model, fine-tuned layers, "
                         "background, gain and interval of its tuning file from `crowdsafe tune` "
                         "(the images must be that camera's, at its resolution; replaces --model).",
        exists=True, dir_okay=False, show_default=False)] = None,
) -> None:
    """Count labelled images: MAE, RMSE, bias, relative error, correlation, interval coverage, speed."""
    check_out_folder("--json", json_out)
    with user_errors():
        videos = [path for path in data if is_video(path)]
        datasets = _unique([d for path in data if path not in videos for d in find_datasets(path)])
        interval = parse_interval(every) if videos else None
        tuned = None
        if tuning_file is not None:
            if person_heights is not None or site_file is not None:
                raise fail("--tuning sets the camera's counting; leave out --person-heights and --site")
            tuned = load_tuning(tuning_file)
        commissioned = None if tuned is None else tuned.commissioned_precision
        spec = engine_spec(engine, precision, threads, announce=False, commissioned=commissioned)
        if tuned is not None:
            layers = () if tuned.layers is None else (tuned.layers,)
            counter: Counts = TunedCounter(counter_factory(ctx)(spec_for(tuned.model_key, spec, layers)),
                                           tuned)
            model_name = f"{tuned.model_key}, tuned for {tuned.camera}"
        else:
            person_rows = _person_rows(person_heights, site_file, camera)
            counter = make_model_counter(model.value, spec, person_px=person_rows,
                                         factory=counter_factory(ctx))
            if person_rows is not None and scale_normalise:
                counter = normalised_counter(counter, getattr(counter, "model", "auto"), person_rows)
            model_name = model.value
        announce_precision(precision, commissioned)  # once the options are known good: one error line
        results = []
        for dataset in datasets.values():
            total = min(len(dataset.images), limit or len(dataset.images))
            with progress_bar(f"evaluating {dataset.name}", total) as advance:
                results.append(evaluate_dataset(dataset, counter, limit, on_progress=advance))
        for video in videos:
            with progress_bar(f"evaluating {video.name}", None) as advance:
                results.append(evaluate_video(video, counter, interval, on_progress=advance))
    engine_name = getattr(getattr(counter, "engine", None), "name", "n/a")
    stdout_console().print(results_table(
        results, f"Counting accuracy ({model_name} model, {engine_name}, {spec.precision})"))
    if json_out is not None:
        out = results_json(results, engine_name, spec.precision, model.value)
        if tuned is not None:
            out.update({"model": tuned.model_key, "tuning": str(tuning_file)})
        write_out(json_out, json.dumps(out, indent=2) + "\n")
