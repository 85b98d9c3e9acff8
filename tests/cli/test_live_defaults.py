"""`run` and `demo` are the same live pipeline: with no option they must start on the same engine and
precision, or the production command is silently slower than the demo that was measured. The
offline commands (`count`, `eval`, `eval-site`, `tune`) default to the same precision, resolved
the same way, and every one of them says which and why."""

from __future__ import annotations

import pytest
import typer.main

from crowdsafe.cli.main import app
from crowdsafe.cli.options import EngineChoice, PrecisionChoice, engine_spec
from crowdsafe.counting import precision as prec
from crowdsafe.counting.precision import INT8_DRIFT_LIMIT_PCT, Int8Validation, default_precision

LIVE = ("run", "demo", "count")
ACCURACY = ("eval", "eval-site", "tune")


def _defaults(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in cmd.params if p.name in ("engine", "precision", "threads")}


def test_run_starts_on_the_demos_engine_and_precision():
    run, demo = _defaults("run"), _defaults("demo")
    assert run == demo
    assert str(run["precision"]) in ("auto", "PrecisionChoice.auto")


@pytest.mark.parametrize("command", LIVE)
def test_the_live_commands_and_count_default_to_what_demo_runs(command: str):
    assert _defaults(command) == _defaults("demo")


@pytest.mark.parametrize("command", ACCURACY)
def test_the_accuracy_commands_default_to_fp32_and_say_why(command: str, capsys: pytest.CaptureFixture[str]):
    defaults = _defaults(command)
    assert defaults["precision"] is None and defaults["engine"] == _defaults("demo")["engine"]
    spec = engine_spec(EngineChoice.auto, defaults["precision"], None)  # type: ignore[arg-type]
    assert spec.precision == "fp32"
    banner = " ".join(capsys.readouterr().err.split())
    assert "precision fp32" in banner and "coverage 96 % in int8" in banner
    assert engine_spec(EngineChoice.auto, PrecisionChoice.auto, None).precision == "int8"


def test_auto_is_int8_where_each_shipped_table_is_validated(capsys: pytest.CaptureFixture[str]):
    spec = engine_spec(EngineChoice.auto, PrecisionChoice.auto, None)
    assert spec.precision == "int8"  # both models ship a table within the drift limit
    banner = capsys.readouterr().err
    assert "precision int8" in banner and "dense 0.11 %" in banner and "sparse 0.07 %" in banner
    spec = engine_spec(EngineChoice.auto, PrecisionChoice.fp32, None)
    assert spec.precision == "fp32" and "asked for with --precision" in capsys.readouterr().err


def test_a_table_beyond_the_drift_limit_falls_back_to_bf16_or_fp32(monkeypatch: pytest.MonkeyPatch):
    over = Int8Validation(INT8_DRIFT_LIMIT_PCT * 2, 140, "x.json")
    monkeypatch.setitem(prec.INT8_VALIDATED, "sparse", over)
    for has_bf16, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(prec, "cpu_has_bf16", lambda has=has_bf16: has)
        chosen, why = default_precision()
        assert chosen == expected
        assert "sparse model's int8 drift" in why and "above the 1 % limit" in why
    assert default_precision(["dense"])[0] == "int8"  # a command that runs only the dense model


def test_a_model_without_a_measured_drift_is_not_run_in_int8_by_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(prec.INT8_VALIDATED, "dense")
    monkeypatch.setattr(prec, "cpu_has_bf16", lambda: False)
    chosen, why = default_precision()
    assert chosen == "fp32" and "no measured drift" in why
