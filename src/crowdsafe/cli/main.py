"""Entry point: every sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import typer

import crowdsafe.cli.forecast as forecast
import crowdsafe.cli.report as report
import crowdsafe.cli.simulate as simulate
import crowdsafe.cli.train as train
from crowdsafe.cli import (
    background,
    bench,
    calibrate,
    count,
    demo,
    eval_site,
    evaluate,
    export,
    label,
    models,
    run,
    serve,
    site,
    token,
    tune,
)

app = typer.Typer(
    name="crowdsafe",
    help="Privacy-preserving crowd-safety analytics: counts crowds, never persons.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.command("count")(count.count)
app.command("eval")(evaluate.evaluate)
app.command("eval-site")(eval_site.eval_site)
app.command("bench")(bench.bench)
app.command("demo")(demo.demo)
app.command("export")(export.export)
app.command("report")(report.report)
app.command("calibrate")(calibrate.calibrate)
app.add_typer(site.app, name="site")
app.command("run")(run.run)
app.command("serve")(serve.serve)
app.add_typer(token.app, name="token")
app.add_typer(background.app, name="background")
app.add_typer(forecast.app, name="forecast")
app.command("simulate")(simulate.simulate)
app.command("train")(train.train)
app.command("tune")(tune.tune)
app.command("label")(label.label)


if __name__ == "__main__":
    app()
