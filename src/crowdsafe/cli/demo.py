"""``crowdsafe demo``: the main job on the bundled sample video, compared with its ground truth.

It is what the Quick start's first command ends with, so it must work offline on a fresh
install and tell the truth about how well the shipped model does on this scene.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.cli.count import to_csv
from crowdsafe.cli.errors import err_console, user_errors
from crowdsafe.cli.options import (
    EngineChoice,
    EngineOption,
    PrecisionChoice,
    PrecisionOption,
    ThreadsOption,
    engine_spec,
)
from crowdsafe.cli.progress import progress_bar
from crowdsafe.counting import batch
from crowdsafe.counting.batch import CountReport, LazyCounter, run_count
from crowdsafe.render.writer import HeatmapWriter
from crowdsafe.sources import open_source, parse_interval


def sample_video() -> Path:
    return Path(str(resources.files("crowdsafe") / "data" / "vtest.avi"))


def ground_truth() -> dict[int, int]:
    """Annotated people per frame of the sample video (PETS 2009 S2.L1, see data/README.md)."""
    text = (resources.files("crowdsafe") / "data" / "vtest_counts.csv").read_text()
    return {int(r["frame_index_in_vtest"]): int(r["count"]) for r in csv.DictReader(text.splitlines())}


def compare(report: CountReport, truth: dict[int, int]) -> dict[str, float]:
    pairs = [(c.count, truth[c.index]) for c in report.counts if c.index in truth]
    if not pairs:
        return {}
    n = len(pairs)
    return {"frames": n, "mean_count": sum(p for p, _ in pairs) / n,
            "mean_truth": sum(t for _, t in pairs) / n,
            "mae": sum(abs(p - t) for p, t in pairs) / n}


def demo(
    out: Annotated[Path, typer.Option(help="Folder for counts.csv and heatmaps/.")] = Path("out/demo"),
    every: Annotated[str, typer.Option(help="Count one frame per interval.")] = "5s",
    heatmaps: Annotated[bool, typer.Option(help="Write density overlays of the sample video.")] = True,
    engine: EngineOption = EngineChoice.auto,
    precision: PrecisionOption = PrecisionChoice.fp32,
    threads: ThreadsOption = None,
) -> None:
    """Count people in the bundled sample video; write counts.csv and heat-maps; compare with truth."""
    with user_errors():
        out.mkdir(parents=True, exist_ok=True)
        source = open_source(sample_video(), parse_interval(every))
        writer = HeatmapWriter(out / "heatmaps") if heatmaps else None
        spec = engine_spec(engine, precision, threads)
        counter = LazyCounter(lambda: batch.make_counter(spec))
        with progress_bar("counting the sample video", source.expected) as advance:
            report = run_count(source, counter, on_frame=writer, on_progress=advance)
    (out / "counts.csv").write_text(to_csv(report))
    stats = compare(report, ground_truth())
    engine_name = counter.engine.name if counter.engine is not None else "?"
    typer.echo(f"counted {len(report.counts)} frames of {source.name} in {report.seconds:.1f} s "
               f"({engine_name}, {precision.value})")
    typer.echo(f"counts: {out / 'counts.csv'}" + (f"; heat-maps: {out / 'heatmaps'}/" if writer else ""))
    if stats:
        typer.echo(f"mean count {stats['mean_count']:.1f} vs {stats['mean_truth']:.1f} annotated people; "
                   f"MAE {stats['mae']:.1f} over {stats['frames']} frames")
        if stats["mae"] > 2:
            err_console.print(
                "note: the shipped CSRNet weights were trained on dense crowds and over-count sparse "
                "street scenes like this one (see README, Known limits).", highlight=False, markup=False,
                soft_wrap=True)
    for item in report.skipped:
        err_console.print(f"skipped {item.source}: {item.reason}", highlight=False, markup=False)
