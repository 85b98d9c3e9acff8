"""``crowdsafe bench``: frames/s, GFLOP/s, % of peak and count drift per model x engine x precision."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crowdsafe.bench.machine import machine_info
from crowdsafe.bench.regions import RegionRow, as_dicts, region_bench
from crowdsafe.bench.runner import SIZES, BenchConfig, BenchReport, run_bench
from crowdsafe.bench.site import STAGES, BenchError, SiteBench, site_bench
from crowdsafe.cli.errors import fail, user_errors
from crowdsafe.cli.options import counter_factory
from crowdsafe.counting.counter import Counts
from crowdsafe.counting.engines import ENGINES, PRECISIONS, EngineName, EngineSpec, Precision
from crowdsafe.counting.precision import default_precision
from crowdsafe.counting.variants import MODELS, ModelName

#: The public dev set, when this runs inside a checkout that has the shared data next to it.
DEFAULT_DRIFT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "crowd"
_DRIFT_DEFAULT = DEFAULT_DRIFT_DATA if DEFAULT_DRIFT_DATA.is_dir() else None
DEMO_SITE = Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise fail(f"size {text!r} is not WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < 32 or h < 32:
        raise fail(f"size {text!r} is too small; at least 32x32")
    return w, h


def _choices(values: list[str] | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not values:
        return list(allowed)
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise fail(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return items


def render(report: BenchReport, console: Console) -> None:
    table = Table(title="crowdsafe bench (CSRNet, batch 1)")
    notes: list[str] = []
    for col in ("model", "engine", "precision", "size", "frames/s", "s/frame (min-max)", "GFLOP/s",
                "% fp32 peak", "count drift"):
        left = col in ("model", "engine", "precision")
        table.add_column(col, justify="left" if left else "right", no_wrap=True)
    for r in report.rows:
        size = f"{r.width}x{r.height}"
        if not r.available:
            note = f"{r.model} {r.engine} {r.precision}: {r.reason}"
            if note not in notes:
                notes.append(note)
            table.add_row(r.model, r.engine, r.precision, size, "[yellow]unavailable[/]",
                          f"see note {notes.index(note) + 1}", "", "", "")
            continue
        spread = f"{r.seconds_median:.2f} ({r.seconds_min:.2f}-{r.seconds_max:.2f})"
        drift = "fp32 ref" if r.precision == "fp32" else (
            f"{r.drift_pct:.2f} %" if r.drift_pct is not None else "n/a (no dev data)")
        table.add_row(r.model, r.engine, r.precision, size, f"{r.fps:.2f}", spread, f"{r.gflops:.0f}",
                      f"{r.pct_of_peak:.0f} %" if r.pct_of_peak is not None else "", drift)
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"note {i}: {note}", highlight=False)
    m = report.machine
    console.print(f"machine: {m['cpu']}, {m['cores']} logical cores, load {m['load_avg_1m_at_start']}"
                  f" at start; fp32 peak {report.peak_gflops:.0f} GFLOP/s ({report.peak_method})")
    console.print("GFLOP/s = analytic conv FLOPs (2 x MACs) / median s/frame; drift = "
                  "|sum reduced - sum fp32| / sum fp32 over the dev images, same model and engine")


def render_regions(rows: list[RegionRow], spec: EngineSpec, console: Console) -> None:
    table = Table(title=f"region-only inference ({spec.engine} {spec.precision}, batch 1)")
    for col in ("camera", "frame", "inferred crop", "region / frame", "frames/s full", "frames/s region",
                "saving"):
        table.add_column(col, justify="left" if col in ("camera", "inferred crop") else "right", no_wrap=True)
    for r in rows:
        crop = "whole frame" if r.crop is None else "{},{}-{},{}".format(*r.crop)
        table.add_row(r.camera, f"{r.width}x{r.height}", crop, f"{100 * r.region_share:.0f} %",
                      f"{r.fps_full:.2f}", f"{r.fps_region:.2f}", f"{r.saving_pct:.0f} %")
    console.print(table)


def bench(
    ctx: typer.Context,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the report here as JSON.")] = None,
    models: Annotated[list[str] | None, typer.Option("--model", "-m",
                      help=f"Models (repeat or comma-separate): {', '.join(MODELS)}; "
                      "default both.")] = None,
    engines: Annotated[list[str] | None, typer.Option("--engine", "-e",
                       help=f"Engines to run (repeat or comma-separate): {', '.join(ENGINES)}.")] = None,
    precisions: Annotated[list[str] | None, typer.Option("--precision", "-p",
                          help=f"Precisions: {', '.join(PRECISIONS)}.")] = None,
    sizes: Annotated[list[str] | None, typer.Option("--size", "-s",
                     help="WIDTHxHEIGHT sizes (default 640x360, 1280x720, 1920x1080).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per cell (median reported).")] = 3,
    threads: Annotated[int | None, typer.Option(help="Engine threads (default: all cores).")] = None,
    drift_data: Annotated[Path | None, typer.Option(
        help="Folder of dataset folders of crowd images for count drift vs fp32.")] = _DRIFT_DEFAULT,
    drift_images: Annotated[int, typer.Option(
        help="Images per dataset for drift (0 = all).", min=0)] = 5,
    drift_max_side: Annotated[int, typer.Option(
        help="Downscale drift images to this longer side.", min=64)] = 1024,
    quick: Annotated[bool, typer.Option(help="640x360 only, 1 timed run, 2 drift images per "
                                        "dataset at <=512 px: a smoke test, not a measurement.")] = False,
    regions: Annotated[bool, typer.Option(
        "--regions", help="Also time each camera of --site inferring only the region its zones and "
        "lines need vs its full frame (first engine and precision asked).")] = False,
    site: Annotated[Path | None, typer.Option(
        help="Run this site's whole pipeline (decode, sample, count, background, measure, flow, store, "
        "alerts; no API) and report each camera's frames/s delivered against its engine alone and "
        "the time per frame of each stage. With --regions: the site whose regions are timed "
        "(default: the demo site).", show_default=False)] = None,
    duration: Annotated[float, typer.Option(
        min=4.0, help="Seconds of --site: half engine-only, half the whole pipeline, interleaved in "
        "slices of about 20 s.")] = 60.0,
) -> None:
    """Measure speed and int8/bf16 count drift of every model x engine x precision on this machine."""
    if site is not None and not regions:
        _site_bench(site, engines, precisions, threads, duration, json_out, counter_factory(ctx))
        return
    site = site or DEMO_SITE
    size_list = [_parse_size(s) for s in sizes] if sizes else list(SIZES)
    if quick:
        size_list, repeats = [(640, 360)], 1
        drift_images, drift_max_side = min(drift_images or 2, 2), min(drift_max_side, 512)
    model_list: list[ModelName] = _choices(models, MODELS, "model")  # type: ignore[assignment]
    engine_list: list[EngineName] = _choices(engines, ENGINES, "engine")  # type: ignore[assignment]
    precision_list: list[Precision] = _choices(precisions, PRECISIONS, "precision")  # type: ignore[assignment]
    # a pipe or CI log is 80 columns by default, too narrow for the table
    console = Console(width=None if Console().is_terminal else 130)
    config = BenchConfig(models=model_list, engines=engine_list, precisions=precision_list, sizes=size_list,
                         repeats=repeats, threads=threads, drift_data=drift_data,
                         drift_images=drift_images or None, drift_max_side=drift_max_side)
    with user_errors(), console.status("benchmarking") as status:
        report = run_bench(config, progress=lambda msg: status.update(msg))
    render(report, console)
    data = report.as_dict()
    if regions:
        spec = EngineSpec(engine=engine_list[0], precision=precision_list[0], threads=threads)
        with user_errors(), console.status(f"timing regions of {site}"):
            region_rows = region_bench(site, spec, repeats)
        render_regions(region_rows, spec, console)
        command = ["crowdsafe", "bench", "--regions", "--site", str(site), "-e", spec.engine, "-p",
                   spec.precision, *(["--quick"] if quick else ["--repeats", str(repeats)]),
                   *(["--threads", str(threads)] if threads else [])]
        data["regions"] = {"site": str(site), "engine": spec.engine, "precision": spec.precision,
                           "command": shlex.join(command), "cameras": as_dicts(region_rows)}
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def render_site(result: SiteBench, console: Console) -> None:
    table = Table(title=f"site pipeline ({result.engine} {result.precision}; {result.models})")
    for col in ("camera", "delivered/s", "engine/s", "ratio", "dropped", *(f"{name} ms" for name in STAGES)):
        table.add_column(col, justify="left" if col == "camera" else "right", no_wrap=True)
    for cam in result.cameras:
        table.add_row(cam.camera, f"{cam.delivered_fps:.2f}", f"{cam.engine_fps:.2f}",
                      f"{100 * cam.ratio:.0f} %", str(cam.dropped),
                      *(f"{1000 * cam.stages[name]:.1f}" for name in STAGES))
    console.print(table)
    console.print(f"CPU seconds of this process per frame: {result.engine_cpu_s_per_frame:.2f} engine only, "
                  f"{result.pipeline_cpu_s_per_frame:.2f} through the whole pipeline", highlight=False)
    console.print("delivered/s: frames/s through the whole pipeline; engine/s: the camera's counter alone on "
                  "the same frames, interleaved with it; ms: wall milliseconds per delivered frame in each "
                  "stage (decode runs on the camera's reader thread, measure to alerts beside the engine's "
                  "next frame; store and alerts hand their rows to threads of their own)", highlight=False)


def _site_bench(site: Path, engines: list[str] | None, precisions: list[str] | None, threads: int | None,
                duration: float, json_out: Path | None, factory: Callable[[EngineSpec], Counts]) -> None:
    engine_list = _choices(engines, (*ENGINES, "auto"), "engine") if engines else ["auto"]
    precision_list = _choices(precisions, PRECISIONS, "precision") if precisions else None
    console = Console(width=None if Console().is_terminal else 130)
    precision, why = (precision_list[0], "asked for with --precision") if precision_list \
        else default_precision()
    spec = EngineSpec(engine=engine_list[0], precision=precision, threads=threads)  # type: ignore[arg-type]
    console.print(f"precision {precision}: {why}", highlight=False)
    with user_errors(), console.status(f"running {site}") as status:
        try:
            result = site_bench(site, spec, duration, factory, progress=lambda msg: status.update(msg))
        except BenchError as exc:
            raise fail(str(exc)) from None
    render_site(result, console)
    if json_out is not None:
        command = ["crowdsafe", "bench", "--site", str(site), "--duration", f"{duration:g}",
                   *(["-e", engine_list[0]] if engines else []),
                   *(["-p", precision] if precision_list else []),
                   *(["--threads", str(threads)] if threads else [])]
        data = {"machine": machine_info(), "command": shlex.join(command), "precision_reason": why,
                "site": result.as_dict()}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"wrote {json_out}")
