"""The ``podium`` command line."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from podium.cli.bench_cmd import bench
from podium.cli.board_cmd import board
from podium.cli.common import setup_logging
from podium.cli.demo_cmd import demo
from podium.cli.pipeline_cmds import aggregator, backfill, enqueue, forget, sweep_cmd, worker
from podium.cli.report_cmd import report
from podium.cli.select_cmd import select
from podium.cli.status_cmd import status
from podium.cli.tune_cmd import tune
from podium.cli.watch_cmd import watch

app = typer.Typer(
    name="podium",
    help="Honest inference-latency benchmarks and an outlier-proof best model per study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug)")] = 0,
) -> None:
    setup_logging(verbose)


app.command("demo")(demo)
app.command("select")(select)
app.command("bench")(bench)
app.command("tune")(tune)
app.command("enqueue")(enqueue)
app.command("backfill")(backfill)
app.command("worker")(worker)
app.command("aggregator")(aggregator)
app.command("watch")(watch)
app.command("status")(status)
app.command("report")(report)
app.command("sweep")(sweep_cmd)
app.command("forget")(forget)
app.command("board")(board)


def main() -> None:
    # MLflow draws a tqdm bar on every artifact download; podium draws its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow configures its own loggers when first imported (after ours): keep its INFO chatter (schema
    # migrations of a new sqlite store) out of podium's output unless asked for.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    app()
