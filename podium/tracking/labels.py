"""Readable names next to the hashes: a study's label (its study tag, else its experiment's name) and a scope's
(the study's label, the backend, the model format, the batch sizes), and the params and quality metric of the
trials a selection names. Read in one query for all the runs a selection names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mlflow.entities import Run

from podium.core.filters import run_id_in
from podium.core.plain import STUDY_TAGS, group_label
from podium.core.store import ScopeLabels
from podium.tracking.tracker import MlflowTracking

_BATCH = re.compile(r"^latency_batch_(\d+)_ms$")
#: Run ids per look-up.
CHUNK = 500


def runs_named(tracking: MlflowTracking, run_ids: Iterable[str]) -> dict[str, Run]:
    ids = sorted(set(run_ids))
    out: dict[str, Run] = {}
    experiments = tracking.experiment_ids()  # reads only (the hot path's list would create podium's experiment)
    for start in range(0, len(ids), CHUNK):
        out.update((r.info.run_id, r) for r in tracking.search(experiments, run_id_in(ids[start : start + CHUNK])))
    return out


def study_label_of(tracking: MlflowTracking, run: Run | None) -> str | None:
    if run is None:
        return None
    for tag in STUDY_TAGS:
        if run.data.tags.get(tag):
            return run.data.tags[tag]
    from podium.tracking.plain_runs import experiment_name

    return experiment_name(tracking, str(run.info.experiment_id)) or None


def scope_label(tracking: MlflowTracking, study_label: str | None, benchmark: Run | None) -> str | None:
    """``<study> · <backend> · <format> · batch 1,8``: what a scope measured, from one of its benchmark runs."""
    if benchmark is None:
        return study_label
    b = tracking.tags.benchmark
    sizes = sorted(int(m.group(1)) for k in benchmark.data.metrics if (m := _BATCH.match(k)))
    batches = f"batch {','.join(map(str, sizes))}" if sizes else None
    return group_label(
        study_label, None, benchmark.data.tags.get(b.backend), benchmark.data.tags.get(b.model_format), batches
    )


def trial_facts(run: Run | None, objective_metric: str) -> dict[str, Any]:
    """The trial's params and its quality metric, as the training logged them."""
    if run is None:
        return {"params": {}, "metrics": {}}
    metric = run.data.metrics.get(objective_metric)
    return {"params": dict(run.data.params), "metrics": {} if metric is None else {objective_metric: metric}}


def describe_selections(
    tracking: MlflowTracking, selections: Iterable[Any]
) -> dict[tuple[str, str | None], ScopeLabels]:
    """Labels and trial facts of every selection, keyed by (study, config hash); read in one look-up."""
    chosen = list(selections)
    wanted = set()
    for s in chosen:
        for c in s.candidates:
            wanted |= {c.trial_run_id, c.benchmark_run_id}
    runs = runs_named(tracking, wanted) if wanted else {}
    out = {}
    for s in chosen:
        study = study_label_of(tracking, runs.get(s.best.trial_run_id))
        trials = {
            c.trial_run_id: trial_facts(runs.get(c.trial_run_id), tracking.objective_metric) for c in s.candidates
        }
        label = scope_label(tracking, study, runs.get(s.best.benchmark_run_id))
        out[(s.study_key_hash, s.benchmark_config_hash)] = ScopeLabels(study, label, trials)
    return out


def label_json(document: dict[str, Any], labels: ScopeLabels | None) -> dict[str, Any]:
    """A selection's JSON with its labels, and each candidate's trial params and quality metric beside it."""
    if labels is None:
        return document
    document["study_label"] = labels.study_label
    document["label"] = labels.label
    for key in ("best", "challenger"):
        if isinstance(document.get(key), dict):
            document[key].update(labels.trials.get(document[key].get("trial_run_id"), {}))
    for candidate in document.get("candidates", []):
        candidate.update(labels.trials.get(candidate.get("trial_run_id"), {}))
    return document
