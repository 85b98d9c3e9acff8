"""``crowdsafe eval-site``: the site's whole path (counter, geometry, zones, lines) vs annotated video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, fail, user_errors, write_out
from crowdsafe.cli.options import (
    AccuracyPrecisionOption,
    EngineChoice,
    EngineOption,
    SiteFileArg,
    ThreadsOption,
    VideoCameraOption,
    counter_factory,
    engine_spec,
)
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.tuning import load_tuning
from crowdsafe.evaluation.site import evaluate_site, load_frame_points, summary_rows
from crowdsafe.runtime.counters import CameraCounters
from crowdsafe.runtime.plan import compile_plan, read_tunings


def eval_site(
    ctx: typer.Context,
    site_file: SiteFileArg,
    camera: VideoCameraOption,
    feet: Annotated[Path, typer.Option(
        help="Annotated foot points per frame: {\"<frame>\": {\"points\": [[x, y], ...]}}; they place "
             "each person on the floor for the zone and line truth.", exists=True, dir_okay=False,
        show_default=False)],
    density_from: Annotated[Path | None, typer.Option(
        help="Replace the counter with these points (e.g. annotated head centres) rasterised as a "
             "density map, to check geometry and flow apart from the counter.", exists=True,
        dir_okay=False, show_default=False)] = None,
    frames: Annotated[str | None, typer.Option(
        help="START:STOP[:STEP] frame indices of the camera's video (STOP exclusive); default: every "
             "annotated frame.", show_default=False)] = None,
    tuning: Annotated[Path | None, typer.Option(
        help="Tuning file for --camera from `crowdsafe tune` (replaces the one the site file names).",
        exists=True, dir_okay=False, show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the results as JSON to this file.", show_default=False)] = None,
    engine: EngineOption = EngineChoice.auto,
    precision: AccuracyPrecisionOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Per zone, per line and whole-frame accuracy of the site pipeline on an annotated video."""
    check_out_folder("--json", json_out)
    from crowdsafe.cli.site import annotated_camera

    with user_errors():
        site, geometry, truth, span, video = annotated_camera(site_file, camera, feet, frames)
        heads = load_frame_points(density_from) if density_from is not None else None
        tunings = read_tunings(site)
        if tuning is not None:
            tunings[camera] = load_tuning(tuning)
            if tunings[camera].camera != camera:
                raise fail(f"--tuning {tuning}: tuned for camera {tunings[camera].camera!r}, not {camera!r}")
        plan = compile_plan(geometry, tunings)
        commissioned = tunings[camera].commissioned_precision if camera in tunings else None
        spec = engine_spec(engine, precision, threads, commissioned=commissioned)
        factory = counter_factory(ctx)
        counter = None if heads is not None else CameraCounters(plan, spec, factory,
                                                                   regions=False)  # whole-frame truth
        every = site.camera(camera).sampling.seconds  # an image folder's frames are this far apart
        with progress_bar(f"evaluating {camera}", len(span)) as advance:
            result = evaluate_site(plan, camera, video, truth, span, counter, heads=heads,
                                   on_frame=lambda _: advance(), folder_fps=1.0 / max(every, 1e-3))
    data = result.as_dict()
    title = (f"Site pipeline vs annotation: {camera}, frames {span.start}:{span.stop}:{span.step}, "
             f"counter {result.counter}")
    table = Table(title=title, title_justify="left")
    for column in ("what", "truth (mean / crossings)", "measured", "MAE / frame", "bias"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for row in summary_rows(data):
        table.add_row(*row)
    stdout_console().print(table)
    if json_out is not None:
        write_out(json_out, json.dumps(data, indent=2) + "\n")
