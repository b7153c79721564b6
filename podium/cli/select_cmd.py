"""``podium select``: the best model of every study and config, from an MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from podium.cli.common import EXIT_NOTHING, console, podium_errors
from podium.core.choices import Aggregation

if TYPE_CHECKING:
    from podium.core.aggregation import ScopeKey
    from podium.core.config import SelectionConfig
    from podium.core.selection import Candidate, Selection
    from podium.core.state import SelectionState


def select(
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (env PODIUM_TRACKING_URI; default .podium/mlflow.db)")
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment name (repeatable); default: all active")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml (default config/...)")] = None,
    tags: Annotated[Path | None, typer.Option(help="tags.yaml registry (default config/tags.yaml)")] = None,
    aggregation: Annotated[
        Aggregation | None, typer.Option(help="Override benchmark.across_runs (how runs are combined)")
    ] = None,
    include_unstable: Annotated[
        bool | None,
        typer.Option(
            "--include-unstable/--clean-only", help="Override selection.include_unstable (let doubtful runs compete)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Pick the best model of each (study, benchmark config): one candidate per benchmark_key, its per-run
    figure (p50 by default) combined across its runs (never the luckiest one); the best changes only on a
    difference beyond the noise. Exit 0: selected; 3: nothing to select; 2: bad input."""
    from podium.core.documents import candidate_document
    from podium.core.verification import SkewBounds
    from podium.settings.env import PodiumSettings
    from podium.settings.files import load_selection_config, load_tags

    settings = PodiumSettings()
    with podium_errors():
        from podium.tracking.selected import select_store
        from podium.tracking.tracker import MlflowTracking

        cfg = (
            load_selection_config(config, settings.config_dir)
            .with_aggregation(aggregation)
            .with_include_unstable(include_unstable)
        )
        registry = load_tags(tags, settings.config_dir)
        tracking = MlflowTracking.connect(
            tracking_uri or settings.tracking_uri, registry, objective_metric=cfg.objective.metric, create=False
        )
        skew = SkewBounds(int(settings.max_clock_skew_s * 1000), settings.max_benchmark_s * 1000)  # as the aggregator
        chosen = select_store(tracking, experiment, cfg, skew)  # with readable names, the trials' params, metric
        selections, state, labels = chosen.selections, chosen.state, chosen.labels
    if as_json:
        docs = chosen.documents()
        unselected = [
            {
                "study_key_hash": scope.study_key_hash,
                "benchmark_config_hash": scope.config_hash,
                "best": None,
                "excluded": [candidate_document(c) for c in out],
            }
            for scope in state.scopes()
            if (out := state.unselected(scope))
        ]
        typer.echo(json.dumps({"selections": docs, "unselected": unselected}, sort_keys=False))
    else:
        _print_tables(selections, cfg, state.unjoined_groups(), {k: v.label for k, v in labels.items()}, state)
    if not selections:
        raise typer.Exit(EXIT_NOTHING)


def _scope(s: Selection) -> tuple[str, str | None]:
    return (s.study_key_hash, s.benchmark_config_hash)


def _unselected(state: SelectionState | None) -> list[tuple[ScopeKey, list[Candidate]]]:
    """Scopes with candidates but no best, each with its candidates (none without a state)."""
    if state is None:
        return []
    return [(scope, state.unselected(scope)) for scope in state.scopes()]


def _shown(c: Candidate, cfg: SelectionConfig) -> str:
    """The candidate's figure with its unit: ``4.210 ms``, or ``312.5/s`` (``-`` without one) under
    ``throughput_at_sla``."""
    if cfg.selection.policy != "throughput_at_sla":
        return f"{c.latency_ms:.3f} ms"
    return "-" if c.throughput_at_sla_per_s is None else f"{c.throughput_at_sla_per_s:.1f}/s"


def _print_tables(
    selections: list[Selection],
    cfg: SelectionConfig,
    unjoined: int,
    labels: dict | None = None,
    state: SelectionState | None = None,
) -> None:
    from podium.aggregator.report import NUMERIC, columns, notes, rows
    from podium.core.figure import statistic_name

    if not selections:
        console.print("Nothing to select: no FINISHED, clean benchmark run could be joined with a trial run.")
    figure = f"{statistic_name(cfg.benchmark)} per run, {cfg.benchmark.across_runs} across runs"
    for s in selections:
        config = s.benchmark_config_hash[:12] if s.benchmark_config_hash else "legacy (no benchmark_key)"
        label = (labels or {}).get(_scope(s))
        named = f"{label}  " if label else ""
        title = f"{named}study {s.study_key_hash[:12]}  config {config}  ({cfg.selection.policy}; {figure})"
        table = Table(title=title)
        for col in columns(cfg):
            table.add_column(col, justify="right" if col in NUMERIC else "left")
        for row in rows(s, cfg):
            table.add_row(*row)
        console.print(table)
        for line in notes(s):
            console.print(line)
    if unjoined:
        console.print(f"[yellow]{unjoined} benchmark group(s) had no FINISHED trial run with the objective metric.")
    for scope, unselected in _unselected(state):
        for c in unselected:
            console.print(
                f"study {scope.study_key_hash[:12]} config {(scope.config_hash or 'legacy')[:12]}: no best; "
                f"trial {c.trial_key_hash[:12]} ({_shown(c, cfg)}, {c.latency_figure}) "
                f"does not compete: {c.excluded}",
                markup=False,
            )
