"""``crowdsafe demo``: the demo site running live, with its dashboard, until Ctrl-C.

Why and how: docs/design-notes.md, ``crowdsafe.cli.demo``."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from crowdsafe.api.settings import BACKGROUNDS_DIR, TOKENS_FILE
from crowdsafe.api.tokens import TokenBook, TokenError
from crowdsafe.cli.errors import err_console, fail, user_errors
from crowdsafe.cli.live import ready_or_fail, start_api
from crowdsafe.cli.options import (
    ApiWorkersOption,
    EngineChoice,
    EngineOption,
    PrecisionChoice,
    PrecisionOption,
    ThreadsOption,
    announce_precision,
    counter_factory,
    engine_spec,
    log_to_stderr,
)
from crowdsafe.cli.run import frame_line, install_signals, summary_lines
from crowdsafe.config.site import Site, load_site
from crowdsafe.runtime.allocator import tune_malloc
from crowdsafe.runtime.core import RunnerConfig, SiteRunner, prepare_site
from crowdsafe.runtime.counters import CameraCounters, engine_name
from crowdsafe.runtime.local import local_runner
from crowdsafe.runtime.pipeline import FrameOutput
from crowdsafe.safety.alerts import AlertRule
from crowdsafe.safety.rules import default_rules
from crowdsafe.store.store import Store, StoreError, open_store

DEFAULT_STATE_DIR = Path("crowdsafe-demo")
#: Token names the demo replaces on every start, so its state dir does not pile up old tokens.
DEMO_TOKENS = (("viewer", "demo-viewer"), ("operator", "demo-operator"))
#: The campus scene is quiet (the walkway holds 5-10 people, 2-4 % of its capacity of 250), so
#: no safety rule would ever fire and the alert panel would stay empty. This one extra rule,
#: named as a demo rule, raises when a zone passes DEMO_BUSY_PCT of its capacity (4.5 people on
#: the walkway, which holds 5.5 on average, annotated and counted, now that the walkway's density
#: is placed at head height) and clears below 1.4 % (3.5).
#: The per-frame count jumps across both levels from one frame to the next, so the rule tests
#: the mean of the last 20 s, holds 15 s before it raises and before it clears, and a return
#: within 5 minutes reopens the same alert (one more occurrence) rather than flapping (see
#: benchmarks/results/demo-alerts-10min-2026-12-05.json).
DEMO_BUSY_PCT = 1.8
DEMO_CLEAR_PCT = 1.4
DEMO_SMOOTH_S = 20.0
DEMO_HOLD_S = 15.0
DEMO_COOLDOWN_S = 300.0
#: The sample video (data/README.md): 795 frames at 10 fps, looped by the demo.
DEMO_FPS = 10.0
DEMO_FRAMES = 795


def demo_site_file() -> Path:
    return Path(str(resources.files("crowdsafe") / "data" / "demo_site.yaml"))


def sample_video() -> Path:
    return Path(str(resources.files("crowdsafe") / "data" / "vtest.avi"))


def ground_truth() -> dict[int, int]:
    """Annotated people per frame of the sample video (PETS 2009 S2.L1, see data/README.md)."""
    text = (resources.files("crowdsafe") / "data" / "vtest_counts.csv").read_text()
    return {int(r["frame_index_in_vtest"]): int(r["count"]) for r in csv.DictReader(text.splitlines())}


def annotated_crossings() -> list[tuple[int, str, str]]:
    """(frame k, line, "in"/"out") of each annotated crossing between frames k and k + 1 of the
    sample video (tools/gate_crossings.py, from the annotated foot points)."""
    text = (resources.files("crowdsafe") / "data" / "vtest_gate_crossings.csv").read_text()
    return [(int(r["frame"]), r["line_id"], r["direction"]) for r in csv.DictReader(text.splitlines())]


@dataclass
class GateTally:
    """Each line's measured crossings next to the annotated crossings of the frames they cover.

    A reading at frame f over a period of n frames estimates the crossings between f - n/2 and
    f + n/2 (the flux around the frame), so those frame steps are the ones its truth is counted
    over; a looped video covers frames again, and their crossings count again.
    """

    crossings: list[tuple[int, str, str]]
    fps: float
    frame_count: int
    measured: dict[str, list[float]] = field(default_factory=dict)
    truth: dict[str, list[int]] = field(default_factory=dict)
    readings: int = 0

    def add(self, output: FrameOutput) -> None:
        if output.frame_index is None or not output.line_rows:
            return
        for row in output.line_rows:
            lid = str(row["line_id"])
            steps = max(round(float(row["period_s"]) * self.fps), 1)  # type: ignore[arg-type]
            lo = output.frame_index - steps // 2
            frames = {f % self.frame_count for f in range(lo, lo + steps)}
            m = self.measured.setdefault(lid, [0.0, 0.0])
            m[0] += float(row["in_count"])  # type: ignore[arg-type]
            m[1] += float(row["out_count"])  # type: ignore[arg-type]
            t = self.truth.setdefault(lid, [0, 0])
            for frame, line_id, direction in self.crossings:
                if line_id == lid and frame in frames:
                    t[0 if direction == "in" else 1] += 1
        self.readings += 1

    def summary(self) -> list[str]:
        out = []
        for lid, (m_in, m_out) in sorted(self.measured.items()):
            t_in, t_out = self.truth[lid]
            total_t, total_m = t_in + t_out, m_in + m_out
            err = f"{100 * (total_m - total_t) / total_t:+.1f} %" if total_t else "n/a"
            out.append(f"line {lid}: measured {m_in:.1f} in, {m_out:.1f} out vs annotated {t_in} in, {t_out} "
                       f"out in the frames its {self.readings} readings covered (total {err})")
        return out


def demo_rules(site: Site) -> list[AlertRule]:
    busy = AlertRule("demo_busy", "capacity_pct", raise_at=DEMO_BUSY_PCT, clear_at=DEMO_CLEAR_PCT,
                     severity="info", min_duration_s=DEMO_HOLD_S, cooldown_s=DEMO_COOLDOWN_S,
                     smooth_s=DEMO_SMOOTH_S)
    return [*default_rules(site.safety.egress_limit_s), busy]


@dataclass
class TruthTally:
    """Whole-frame counts next to the annotated people of the same frames."""

    truth: dict[int, int]
    pairs: list[tuple[float, int]] = field(default_factory=list)

    def add(self, output: FrameOutput) -> int | None:
        if output.frame_index is None or output.frame_index not in self.truth:
            return None
        annotated = self.truth[output.frame_index]
        self.pairs.append((output.count, annotated))
        return annotated

    @property
    def mae(self) -> float:
        return sum(abs(c - t) for c, t in self.pairs) / len(self.pairs) if self.pairs else float("nan")

    def summary(self) -> str | None:
        if not self.pairs:
            return None
        n = len(self.pairs)
        mean = sum(c for c, _ in self.pairs) / n
        mean_truth = sum(t for _, t in self.pairs) / n
        return (f"counted vs annotated people over {n} frames: mean {mean:.1f} vs {mean_truth:.1f}, "
                f"MAE {self.mae:.1f}")


def fresh_tokens(state_dir: Path) -> dict[str, str]:
    """New demo tokens (the old ones revoked): printed once, like `crowdsafe token create`."""
    book = TokenBook(state_dir / TOKENS_FILE)
    made = {}
    for role, name in DEMO_TOKENS:
        book.revoke(name)
        made[role] = book.create(role, name)[1]
    return made


def write_demo_report(store: Store, site: Site, start: float, end: float, out: Path, state_dir: Path) -> None:
    """The debrief of the demo's run (``--report``), with the background if one was published."""
    from crowdsafe.cli.report import make_report

    size = make_report(store, site, start, end, out, backgrounds_dir=state_dir / BACKGROUNDS_DIR)
    err_console.print(f"report of the run written to {out} ({size / 1e6:.2f} MB)", highlight=False,
                      markup=False, soft_wrap=True)


def demo(
    ctx: typer.Context,
    state_dir: Annotated[Path, typer.Option(
        help="Folder for the demo's store, tokens and people-free background.")] = DEFAULT_STATE_DIR,
    host: Annotated[str, typer.Option(help="Dashboard address; 0.0.0.0 for all.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="Dashboard port; a free one is used if it is taken.")] = 8080,
    duration: Annotated[float | None, typer.Option(
        min=0.0, help="Stop after this many seconds. Default: run until Ctrl-C.", show_default=False)] = None,
    engine: EngineOption = EngineChoice.auto,
    precision: PrecisionOption = PrecisionChoice.auto,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option(help="Print only the summary, not a line per frame.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="At the end, write the event debrief of the run to this HTML file.", show_default=False)] = None,
    api_workers: ApiWorkersOption = 1,
) -> None:
    """Run the demo site (sample video as a live camera, 3 zones, a gate) with its dashboard."""
    log_to_stderr(logging.WARNING)
    tune_malloc()  # before any thread: bounded RSS over hours (runtime.allocator)
    site_file = demo_site_file()
    with user_errors():
        prepared = prepare_site(load_site(site_file), loop=True)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(state_dir / "crowdsafe.sqlite")
        tokens = fresh_tokens(state_dir)
    except (StoreError, TokenError, OSError) as exc:
        raise fail(str(exc)) from None
    holder: list[SiteRunner] = []
    api = start_api(site_file, prepared.site, store, state_dir, host=host, port=port,
                    runner_of=lambda: next(iter(holder), None), any_port_if_taken=True, workers=api_workers)
    try:
        with user_errors():
            counter = CameraCounters(prepared.plan, engine_spec(engine, precision, threads, announce=False),
                                     counter_factory(ctx))
        tally = TruthTally(ground_truth())
        gates = GateTally(annotated_crossings(), fps=DEMO_FPS, frame_count=DEMO_FRAMES)

        def on_frame(output: FrameOutput) -> None:
            annotated = tally.add(output)
            gates.add(output)
            if not quiet:
                line = frame_line(output)
                typer.echo(line if annotated is None else line.replace(
                    " people", f" people (annotated {annotated})", 1))

        config = RunnerConfig(state_dir=state_dir, duration_s=duration, health_every_s=5.0,
                              rules=tuple(demo_rules(prepared.site)))
        runner = local_runner(prepared, store, counter, config, on_frame=on_frame)
        holder.append(runner)
        install_signals(runner)
        site = prepared.site
        ready_or_fail(api)
        url = f"{api.url}/"
        echo = err_console.print
        announce_precision(precision)
        echo(f"demo site '{site.name}': the sample video looped as camera {site.cameras[0].id}, "
             f"{len(site.zones)} zones, {len(site.lines)} line; {engine_name(counter)}: {counter.describe()}",
             highlight=False, markup=False, soft_wrap=True)
        echo(f"dashboard:      {url}", highlight=False, markup=False, soft_wrap=True)
        echo(f"viewer token:   {tokens['viewer']}", highlight=False, markup=False, soft_wrap=True)
        echo(f"operator token: {tokens['operator']}  (may acknowledge alerts)", highlight=False,
             markup=False, soft_wrap=True)
        echo(f"or open {url}#token={tokens['operator']} to log in as the operator", highlight=False,
             markup=False, soft_wrap=True)
        echo(f"store, tokens and background in {state_dir}/; API docs at {api.url}/docs; "
             + ("Ctrl-C to stop" if duration is None else f"stopping after {duration:g} s"),
             highlight=False, markup=False, soft_wrap=True)
        started = time.time()
        summary = runner.run()
        if report is not None:
            write_demo_report(store, site, started, time.time(), report, state_dir)
    finally:
        api.stop()
        store.close()
    for line in summary_lines(summary):
        typer.echo(line)
    if (truth := tally.summary()) is not None:
        typer.echo(truth)
    for line in gates.summary():
        typer.echo(line)
    if tally.pairs and tally.mae > 2:
        err_console.print(
            "note: the untuned counting models over-count this sparse scene (the sparse model by about 6 "
            "people per frame); the demo camera counts with its tuning (view001_tuning.json, made by "
            "`crowdsafe tune`; see docs/results/accuracy.md).", highlight=False, markup=False, soft_wrap=True)
    if not summary.flushed:
        raise typer.Exit(1)
