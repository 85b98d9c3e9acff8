"""``crowdsafe count``: people counts per frame of an image, a folder of images or a video.

Only numbers leave this command unless the user asks for heatmaps: frames are decoded,
counted and dropped in memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import cv2
import typer
from rich.console import Console
from rich.table import Table

from crowdsafe.cli.console import stdout_console
from crowdsafe.cli.errors import check_out_folder, err_console, fail, user_errors, write_out
from crowdsafe.cli.model_option import ModelChoiceOpt, ModelOption
from crowdsafe.cli.options import (
    EngineChoice,
    EngineOption,
    PrecisionChoice,
    PrecisionOption,
    ThreadsOption,
    announce_precision,
    counter_factory,
    engine_spec,
)
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting.batch import CountReport, LazyCounter, run_count
from crowdsafe.counting.choice import make_model_counter
from crowdsafe.counting.counter import Counts
from crowdsafe.render.writer import HeatmapWriter
from crowdsafe.sources import open_source, parse_interval
from crowdsafe.sources.stream import FiniteStream, is_stream_url
from crowdsafe.sources.video import VideoSource


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _time(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _bound(interval: tuple[float, float] | None, side: int) -> float | None:
    return None if interval is None else round(interval[side], 1)


def report_rows(report: CountReport) -> list[dict[str, Any]]:
    """Per-frame rows with counts rounded to 0.1: more digits would suggest false precision.

    ``lo90``/``hi90`` bound the count (nominal 90 %, fitted on held-out TRAIN images; see
    MODEL_CARD.md); ``model`` says which model counted the frame (``--model auto`` mixes).
    """
    return [{"source": c.source, "frame": c.index, "time_s": _time(c.timestamp),
             "count": round(c.count, 1), "lo90": _bound(c.interval, 0),
             "hi90": _bound(c.interval, 1), "model": c.model} for c in report.counts]


def summary(report: CountReport) -> dict[str, Any]:
    mean = report.mean_count
    return {"frames": len(report.counts), "mean_count": None if mean is None else round(mean, 1),
            "skipped": len(report.skipped), "seconds": round(report.seconds, 2)}


def to_json(report: CountReport, engine: str | None, precision: str) -> str:
    payload = {
        "source": report.source, "engine": engine, "precision": precision,
        "frames": report_rows(report), "summary": summary(report),
        "skipped": [{"source": s.source, "frame": s.index, "reason": s.reason}
                    for s in report.skipped],
    }
    return json.dumps(payload, indent=2) + "\n"


def to_csv(report: CountReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["source", "frame", "time_s", "count", "lo90",
                                                "hi90", "model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(report))
    return buffer.getvalue()


def to_table(report: CountReport) -> Table:
    table = Table(title=f"People count: {report.source}", title_justify="left")
    table.add_column("source")
    table.add_column("frame", justify="right")
    table.add_column("time (s)", justify="right")
    table.add_column("count", justify="right")
    table.add_column("90% interval", justify="right")
    table.add_column("model")
    for row in report_rows(report):
        time_s = "" if row["time_s"] is None else f"{row['time_s']:.1f}"
        interval = "" if row["lo90"] is None else f"{row['lo90']:.1f}-{row['hi90']:.1f}"
        table.add_row(row["source"], str(row["frame"]), time_s, f"{row['count']:.1f}", interval,
                      row["model"])
    return table


def _resolve_format(fmt: OutputFormat | None, output: Path | None) -> OutputFormat:
    """An explicit --format wins; else ``--output x.csv``/``x.json`` implies it; else table."""
    if fmt is not None:
        return fmt
    suffix = output.suffix.lower().lstrip(".") if output else ""
    return OutputFormat(suffix) if suffix in ("csv", "json") else OutputFormat.table


def _emit(report: CountReport, fmt: OutputFormat, output: Path | None,
          engine: str | None, precision: str) -> None:
    if fmt is OutputFormat.table:
        if output is None:
            stdout_console().print(to_table(report))
            return
        buffer = io.StringIO()
        Console(file=buffer, width=120, no_color=True, highlight=False).print(to_table(report))
        text = buffer.getvalue()
    else:
        text = to_json(report, engine, precision) if fmt is OutputFormat.json else to_csv(report)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_out(output, text)


def _report_end(report: CountReport, heatmaps: HeatmapWriter | None) -> None:
    """Summary and skipped items on stderr, where they do not mix with CSV/JSON on stdout."""
    mean = report.mean_count
    mean_text = "" if mean is None else f", mean count {mean:.1f}"
    err_console.print(f"{len(report.counts)} frame(s) counted in {report.seconds:.1f} s"
                      f"{mean_text}", highlight=False, markup=False)
    if heatmaps is not None and heatmaps.written:
        err_console.print(f"{len(heatmaps.written)} heatmap(s) written to {heatmaps.directory}",
                          highlight=False, markup=False)
    if report.skipped:
        err_console.print(f"[yellow]{len(report.skipped)} skipped:[/]", highlight=False)
        for item in report.skipped:
            err_console.print(f"  {item.source}: {item.reason}", highlight=False, markup=False)


def count(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(
        help="An image, a folder of images (natural order), a video file or a stream URL "
             "(rtsp://, http://...; credentials in it are never printed).",
        show_default=False)],
    every: Annotated[str | None, typer.Option(
        "--every", help="Videos and streams: count one frame per interval, e.g. 1s, 500ms, 2 (seconds), "
                        "1m. Default: every frame.", show_default=False)] = None,
    frames: Annotated[int, typer.Option(
        "--frames", min=1, help="Streams: stop after counting this many frames.")] = 10,
    fmt: Annotated[OutputFormat | None, typer.Option(
        "--format", "-f", help="Output format. Default: table, or csv/json when --output "
                               "ends in .csv/.json.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the results to this file instead of stdout.",
        show_default=False)] = None,
    heatmaps: Annotated[Path | None, typer.Option(
        "--heatmaps", help="Write a density heatmap per counted frame into this folder. "
                           "PRIVACY: these images contain the real frame under the colours; "
                           "without this option no pixels are ever written.",
        show_default=False)] = None,
    engine: EngineOption = EngineChoice.auto,
    precision: PrecisionOption = PrecisionChoice.auto,
    threads: ThreadsOption = None,
    model: ModelOption = ModelChoiceOpt.dense,
) -> None:
    """Count people in an image, a folder of images, a video or a stream; one row per counted frame.

    Counts are crowd density sums: nobody is detected, tracked or identified.
    """
    check_out_folder("--output", output)
    if is_stream_url(path):
        # FFmpeg and OpenCV log to the terminal themselves, and their messages may quote the URL
        # with its password: quiet unless the user asked otherwise. Our own lines redact it.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    with user_errors():
        interval = parse_interval(every) if every is not None else None
        source = open_source(path, interval, stream_frames=frames)
        if interval is not None and not isinstance(source, VideoSource | FiniteStream):
            err_console.print("note: --every only applies to videos; counting every image",
                              highlight=False, markup=False)
        writer = None
        if heatmaps is not None:
            try:
                writer = HeatmapWriter(heatmaps)
            except OSError as exc:
                raise fail(f"--heatmaps {heatmaps}: {exc}") from None
        spec = engine_spec(engine, precision, threads, announce=False)
        factory = counter_factory(ctx)

        def build() -> Counts:  # the banner's line once the engine started: a source with nothing
            built = make_model_counter(model.value, spec, factory=factory)  # countable, or an engine
            announce_precision(precision)  # that cannot run here, ends on its error line alone
            return built

        counter = LazyCounter(build)
        try:
            with progress_bar(f"counting {source.name}", source.expected,
                              enabled=(source.expected or 2) > 1) as advance:
                report = run_count(source, counter, on_frame=writer, on_progress=advance)
        except OSError as exc:
            raise fail(f"cannot write heatmap: {exc}") from None
    if not report.counts and len(report.skipped) == 1:
        raise fail(f"{report.skipped[0].source}: {report.skipped[0].reason}")
    if not report.counts:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in report.skipped[:3])
        raise fail(f"no frame could be counted ({reasons or 'the source yielded no frames'})")
    engine_name = getattr(counter.engine, "name", None)
    _emit(report, _resolve_format(fmt, output), output, engine_name,
          str(getattr(counter.engine, "precision", spec.precision)))  # what ran, not what was asked
    _report_end(report, writer)
