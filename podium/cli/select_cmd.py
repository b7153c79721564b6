"""``podium select``: the best model of every study and config, from an MLflow store."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from podium.cli.common import EXIT_NOTHING, console, podium_errors
from podium.core.choices import Aggregation

if TYPE_CHECKING:
    from podium.core.selection import Candidate, Selection


def candidate_dict(c: Candidate) -> dict[str, Any]:
    data = asdict(c)
    if data["composite_score"] is None:
        del data["composite_score"]
    return data


def selection_dict(s: Selection) -> dict[str, Any]:
    return {
        "study_key_hash": s.study_key_hash,
        "benchmark_config_hash": s.benchmark_config_hash,
        "best": candidate_dict(s.best),
        "candidates": [candidate_dict(c) for c in s.candidates],
    }


def select(
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI [env PODIUM_TRACKING_URI; default .podium/mlflow.db]")
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment name (repeatable); default: all active")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml [default config/...]")] = None,
    tags: Annotated[Path | None, typer.Option(help="tags.yaml registry [default config/tags.yaml]")] = None,
    aggregation: Annotated[Aggregation | None, typer.Option(help="Override benchmark.latency_aggregation")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Pick the best model of each (study, benchmark config): one candidate per benchmark_key, latency
    aggregated over its runs (never the luckiest one). Exit 0: selected; 3: nothing to select; 2: bad input."""
    from podium.core.state import select_all
    from podium.settings.env import PodiumSettings
    from podium.settings.files import load_selection_config, load_tags

    settings = PodiumSettings()
    with podium_errors():
        from podium.tracking.tracker import MlflowTracking

        cfg = load_selection_config(config, settings.config_dir).with_aggregation(aggregation)
        registry = load_tags(tags, settings.config_dir)
        tracking = MlflowTracking.connect(
            tracking_uri or settings.tracking_uri, registry, objective_metric=cfg.objective.metric, create=False
        )
        ids = tracking.experiment_ids(experiment)
        selections, state = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), cfg)
    if as_json:
        typer.echo(json.dumps({"selections": [selection_dict(s) for s in selections]}, sort_keys=False))
    else:
        _print_tables(selections, cfg.selection.policy, cfg.benchmark.latency_aggregation, state.unjoined_groups())
    if not selections:
        raise typer.Exit(EXIT_NOTHING)


def _print_tables(selections: list[Selection], policy: str, aggregation: str, unjoined: int) -> None:
    from podium.aggregator.report import COLUMNS, NUMERIC, UNSTABLE_NOTE, rows

    if not selections:
        console.print("Nothing to select: no FINISHED benchmark run could be joined with a trial run.")
    for s in selections:
        config = s.benchmark_config_hash[:12] if s.benchmark_config_hash else "legacy (no benchmark_key)"
        table = Table(title=f"study {s.study_key_hash[:12]}  config {config}  ({policy}, {aggregation} latency)")
        for col in COLUMNS:
            table.add_column(col, justify="right" if col in NUMERIC else "left")
        for row in rows(s):
            table.add_row(*row)
        console.print(table)
        if any(c.unstable for c in s.candidates):
            console.print(UNSTABLE_NOTE)
    if unjoined:
        console.print(f"[yellow]{unjoined} benchmark group(s) had no FINISHED trial run with the objective metric.")
