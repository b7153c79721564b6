"""``podium demo``: watch the whole system work on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from podium.cli.common import EXIT_FAILED, console, needs_extra, podium_errors


def demo(
    trials: Annotated[int, typer.Option(help="Optuna trials to train")] = 8,
    quick: Annotated[bool, typer.Option(help="A small run: 3 trials of 1 s each")] = False,
    home: Annotated[Path, typer.Option(help="Where the demo keeps its MLflow store and logs")] = Path(".podium/demo"),
    train_seconds: Annotated[float, typer.Option(help="Training time per trial")] = 2.0,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Redraw the live view")] = True,
) -> None:
    """Train a small Optuna study of tiny PyTorch taggers, benchmark every trial on two Celery workers,
    and watch the aggregator publish the best model live. Run it again: every benchmark is reused."""
    with needs_extra("demo", "podium demo"):
        from podium.demo.run import DemoOptions, mlflow_ui_command, run_demo
    opts = DemoOptions(
        home=home, trials=3 if quick else trials, train_seconds=1.0 if quick else train_seconds, live=live
    )
    with podium_errors():
        result = run_demo(opts, console)
    console.print()
    table = Table(title=f"podium demo finished in {result.seconds:.0f} s")
    table.add_column("")
    table.add_column("")
    table.add_row("benchmarks measured", str(result.measured))
    table.add_row("benchmarks reused (same benchmark_key)", str(result.reused))
    table.add_row("benchmarks failed", str(result.failed))
    if result.best and result.best.best:
        b = result.best.best
        table.add_row("best model", f"trial {b.trial_key_hash[:12]} ({b.backbone})")
        table.add_row(
            "macro-f1 / latency",
            f"{b.f1_score:.4f} / {b.latency_ms:.3f} ms median at batch 1 over {b.benchmark_runs_count} run(s)",
        )
        table.add_row("model artifact", f"runs:/{b.artifact_run_id}/model/model.pt")
    console.print(table)
    console.print(f"Explore it: podium select --tracking-uri {result.tracking_uri}")
    console.print(f"MLflow UI: {mlflow_ui_command(result.tracking_uri)}")
    if result.failed:
        raise typer.Exit(EXIT_FAILED)
