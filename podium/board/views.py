"""The JSON documents the board serves, assembled from what the feed, the selection cache and Redis said.

Stable shapes (documented in README "Board"): fields are only ever added. Every value read from MLflow goes out
as JSON data; the pages put it into the document as text, never as markup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podium.board.load_curves import run_link
from podium.core.config import SelectionConfig
from podium.core.messages import BestModelUpdate

#: History entries a study document carries (newest first).
HISTORY_SHOWN = 200


def selection_config(cfg: SelectionConfig | None) -> dict[str, Any] | None:
    """What a page needs of the selection config to explain a choice and draw the SLA line."""
    if cfg is None:
        return None
    return {
        "policy": cfg.selection.policy,
        "max_latency_ms": cfg.selection.max_latency_ms,
        #: which figure ``max_latency_ms`` holds: the p99 (``constraint``) or the ranked figure
        "limit_on": "p99" if cfg.selection.policy == "constraint" else "figure",
        "confidence": cfg.selection.confidence,
        "min_improvement": cfg.selection.min_improvement,
        "include_unstable": cfg.selection.include_unstable,
        "objective": {"metric": cfg.objective.metric, "direction": cfg.objective.direction},
        "across_runs": cfg.benchmark.across_runs,
        "window": cfg.benchmark.window,
    }


def study_row(
    study: str,
    latest: list[BestModelUpdate],
    documents: list[dict[str, Any]],
    in_flight: int | None,
    dead_letters: int | None,
) -> dict[str, Any]:
    """One line of the studies page: the newest update of the study's scopes, and counts."""
    newest = max(latest, key=lambda u: u.published_at, default=None)
    # the study's own name (its study tag, else its experiment's) first, then a scope's readable label
    names = [d.get("study_label") for d in documents] + [u.label for u in latest] + [d.get("label") for d in documents]
    label = next((n for n in names if n), None)
    return {
        "study_key_hash": study,
        "label": label,
        "scopes": max(len(latest), len(documents)),
        "seq": max((u.seq for u in latest), default=0),
        # the published best; before any update was heard, the one ``podium select`` names
        "best": newest.best.model_dump(mode="json")
        if newest and newest.best
        else next((d.get("best") for d in documents if d.get("best")), None),
        "reason": newest.reason if newest else None,
        "last_change": newest.published_at if newest else None,
        "candidates": sum(u.candidates for u in latest)
        if latest
        else sum(len(d.get("candidates", [])) for d in documents),
        "in_flight": in_flight,
        "dead_letters": dead_letters,
    }


def study_document(
    study: str,
    seq: int,
    latest: list[BestModelUpdate],
    history: list[BestModelUpdate],
    documents: list[dict[str, Any]],
    cfg: Mapping[str, Any] | None,
    selections: Mapping[str, Any],
    runs: Mapping[str, Any] | None = None,
    sla_p99_ms: Mapping[str, float] | None = None,
    mlflow_ui: str | None = None,
) -> dict[str, Any]:
    """One study: per scope (benchmark config) its current update, its ``podium select --json`` selection, the
    load curves of its candidates and the links to their MLflow runs; the history of its updates, newest first,
    and the selection config. ``runs``: run id -> :class:`~podium.board.selections.RunSeen`."""
    runs = runs or {}
    updates = {u.benchmark_config_hash: u for u in latest}
    docs = {d.get("benchmark_config_hash"): d for d in documents}
    order = sorted(set(updates) | set(docs), key=lambda c: (c is None, c or ""))
    scopes = []
    for config in order:
        update, doc = updates.get(config), docs.get(config)
        scopes.append(
            {
                "benchmark_config_hash": config,
                "label": (update.label if update else None) or (doc or {}).get("label"),
                "update": update.model_dump(mode="json") if update else None,
                "selection": doc,
                "load": load_section(doc, runs, (sla_p99_ms or {}).get(config or "")),
                "links": run_links(doc, runs, mlflow_ui),
            }
        )
    labels = [d.get("study_label") for d in documents] + [s["label"] for s in scopes]
    return {
        "study_key_hash": study,
        "label": next((lbl for lbl in labels if lbl), None),
        "seq": seq,
        "scopes": scopes,
        "history": [u.model_dump(mode="json") for u in reversed(history[-HISTORY_SHOWN:])],
        "selection_config": cfg,
        "selections": dict(selections),
        "mlflow_ui": mlflow_ui,
    }


def _candidates(selection: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [] if selection is None else list(selection.get("candidates", [])) + list(selection.get("excluded", []))


def load_section(selection: Mapping[str, Any] | None, runs: Mapping[str, Any], sla: float | None) -> dict[str, Any]:
    """The latency-vs-throughput curve of each candidate whose benchmark run measured load levels (in the
    selection's order), and the p99 budget when the board knows it."""
    curves = []
    for c in _candidates(selection):
        seen = runs.get(c["benchmark_run_id"])
        if seen is None or seen.load is None:
            continue
        ids = {k: c[k] for k in ("trial_key_hash", "benchmark_key", "benchmark_run_id")}
        curves.append(ids | {"backbone": c.get("backbone")} | seen.load)
    return {"sla_p99_ms": sla, "curves": curves}


def run_links(selection: Mapping[str, Any] | None, runs: Mapping[str, Any], ui: str | None) -> dict[str, str]:
    """Run id -> its page in the MLflow UI, for the candidates' benchmark and trial runs (none without a UI)."""
    if ui is None:
        return {}
    out = {}
    for c in _candidates(selection):
        for key in ("benchmark_run_id", "trial_run_id"):
            seen = runs.get(c[key])
            if seen is not None:
                out[c[key]] = run_link(ui, seen.experiment_id, c[key])
    return out
