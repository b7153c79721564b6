"""``podium report``: the selection chart and table per study and config, also logged to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from podium.cli.common import EXIT_NOTHING, console, needs_extra, podium_errors


def report(
    study: Annotated[str | None, typer.Option(help="Only this study_key_hash (or a unique 6+ prefix)")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the PNG, Markdown and HTML files")] = Path("podium-report"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (env PODIUM_TRACKING_URI)")] = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the files as a selection run in MLflow")] = True,
) -> None:
    """Chart (candidates, Pareto front, chosen model, tolerance band) and table of each selection; beside it, where
    the candidates were measured at load levels, p99 against throughput per level (the p99 budget, the chosen
    model marked)."""
    from podium.core.prefixes import resolve
    from podium.core.safety import require_safe
    from podium.core.state import select_all
    from podium.settings.env import PodiumSettings
    from podium.settings.files import load_selection_config

    settings = PodiumSettings()
    with podium_errors():
        from podium.aggregator.report import device_of, log_to_mlflow, run_metrics_of, write
        from podium.tracking.tracker import MlflowTracking

        if study:
            require_safe(study, "--study")  # refused before anything is read
        cfg = load_selection_config(config, settings.config_dir)
        tracking = MlflowTracking.from_settings(settings, cfg.objective.metric, tracking_uri=tracking_uri, create=False)
        ids = tracking.experiment_ids()
        selections, _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), cfg)
        if study is not None:
            chosen = resolve(study, {s.study_key_hash for s in selections}, "study")
            selections = [s for s in selections if s.study_key_hash == chosen]
        for sel in selections:
            with needs_extra("demo", "podium report (charts with matplotlib)"):
                files = write(sel, cfg, out, device_of(tracking, sel), run_metrics_of(tracking, sel))
            run = log_to_mlflow(tracking, sel, files) if log else None
            drawn = f", {files.load_chart} ({len(files.load['curves'])} load curves)" if files.load else ""
            console.print(
                f"{files.chart}  ({files.points} candidates{drawn})" + (f"  logged in run {run}" if run else "")
            )
    if not selections:
        console.print("Nothing to report: no selection could be made.")
        raise typer.Exit(EXIT_NOTHING)
