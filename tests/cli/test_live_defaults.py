"""`run` and `demo` are the same live pipeline: with no option they must start on the same engine and
precision, or the production command is silently slower than the demo that was measured."""

from __future__ import annotations

import typer.main

from crowdsafe.cli.main import app


def _defaults(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in cmd.params if p.name in ("engine", "precision", "threads")}


def test_run_starts_on_the_demos_engine_and_precision():
    run, demo = _defaults("run"), _defaults("demo")
    assert run == demo
    assert str(run["precision"]) in ("int8", "PrecisionChoice.int8")
