"""Plain MLflow runs: runs written by ordinary MLflow code, with none of podium's tags, read as trials.

A plain run's study is its study tag when it has one, else its experiment (the name is the label, the hash
is derived from it); its trial is the run itself (``trial_key_hash`` = the run id); its champion is the run,
or its newest FINISHED child run that holds the model (``mlflow.parentRunId``). Its fingerprints come from
what the run has: the digests of its logged datasets when there are any, else its own id (data) and its
params (eval). Everything here is pure: the MLflow side reads the runs (``podium.tracking.plain_runs``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from podium.core.identity import sha256_hex, study_key_hash
from podium.core.records import Champion, TrialRecord
from podium.core.tags import TagsRegistry

#: The tag MLflow sets on a nested run, naming its parent.
PARENT_TAG = "mlflow.parentRunId"
#: Tags a plain run may carry to name its study (checked in order); ``optuna.study_name`` is set by some callbacks.
STUDY_TAGS = ("study", "study_name", "optuna.study_name")
#: Written on a benchmark run of a plain run, so the trials of such runs are found again (rebuild, select).
SOURCE_TAG = "code.benchmark.source"
SOURCE_PLAIN = "plain"
#: Written on a benchmark run whose model podium made from the run's (an eager nn.Module traced or exported).
CONVERSION_TAG = "code.benchmark.conversion"
#: A plain trial's ``trial_key_hash`` is its MLflow run id: 32 lowercase hex characters.
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class PlainRun:
    """What podium reads of one MLflow run to adopt it."""

    run_id: str
    experiment_id: str
    experiment_name: str
    status: str
    start_time: int
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: (name, digest, context) of each logged dataset input.
    datasets: tuple[tuple[str, str, str], ...] = ()
    #: Ids of the models the run logged (MLflow 3's logged-model outputs), oldest first.
    logged_models: tuple[str, ...] = ()

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get(PARENT_TAG) or None


def is_podium_run(tags: Mapping[str, str], registry: TagsRegistry) -> bool:
    """Written through podium's helpers (or by podium): it carries the stage or grouping tags."""
    return bool(tags.get(registry.stage.key) or tags.get(registry.grouping.study_key_hash))


def looks_like_run_id(value: str) -> bool:
    return bool(_RUN_ID.fullmatch(value))


def study_label(run: PlainRun) -> str:
    """The readable name of a plain run's study: its study tag, else its experiment's name."""
    for tag in STUDY_TAGS:
        if run.tags.get(tag):
            return str(run.tags[tag])
    return run.experiment_name or f"experiment {run.experiment_id}"


def plain_study_hash(label: str) -> str:
    """The ``study_key_hash`` of a plain study: derived from its label, so the same study always gets it."""
    return study_key_hash(label)


def fingerprints(run: PlainRun, registry: TagsRegistry) -> tuple[str, str]:
    """(data_fp, eval_fp) of a plain run: its fingerprint tags when set; else the digests of its logged datasets
    (training and evaluation contexts apart), the run's own id for data without any, its params for eval."""
    data = run.tags.get(registry.fingerprint.data)
    evaluation = run.tags.get(registry.fingerprint.eval)
    train_sets = sorted(d for d in run.datasets if d[2] not in ("eval", "evaluation", "validation", "test"))
    eval_sets = sorted(d for d in run.datasets if d[2] in ("eval", "evaluation", "validation", "test"))
    if not data:
        data = f"datasets:{sha256_hex([list(d) for d in train_sets])[:32]}" if train_sets else f"run:{run.run_id}"
    if not evaluation:
        evaluation = (
            f"datasets:{sha256_hex([list(d) for d in eval_sets])[:32]}"
            if eval_sets
            else f"params:{sha256_hex(dict(run.params))[:32]}"
        )
    return data[:256], evaluation[:256]


def plain_champion(trial: PlainRun, model_run: PlainRun, registry: TagsRegistry) -> Champion:
    """The champion of a plain trial run whose model lives in ``model_run`` (the run itself, or a child)."""
    data_fp, eval_fp = fingerprints(model_run if model_run.datasets else trial, registry)
    return Champion(
        run_id=model_run.run_id,
        study_key_hash=plain_study_hash(study_label(trial)),
        trial_key_hash=trial.run_id,
        data_fp=data_fp,
        eval_fp=eval_fp,
    )


def backbone_of(run: PlainRun, registry: TagsRegistry) -> str | None:
    return run.params.get(registry.model.backbone_param) or run.tags.get(registry.model.backbone_tag) or None


def plain_trial_records(
    trial: PlainRun, model_run: PlainRun | None, objective_metric: str, registry: TagsRegistry
) -> list[TrialRecord]:
    """The trial record of a plain trial run, and a refit record for the child run holding its model."""
    study = plain_study_hash(study_label(trial))
    out = [_record(trial, "trial", study, trial.run_id, objective_metric, registry)]
    if model_run is not None and model_run.run_id != trial.run_id:
        out.append(_record(model_run, "refit", study, trial.run_id, objective_metric, registry))
    return out


def _record(
    run: PlainRun, kind: str, study: str, trial: str, objective_metric: str, registry: TagsRegistry
) -> TrialRecord:
    data_fp, eval_fp = fingerprints(run, registry)
    return TrialRecord(
        run_id=run.run_id,
        kind=kind,  # type: ignore[arg-type]
        start_time=run.start_time,
        study_key_hash=study,
        trial_key_hash=trial,
        objective=run.metrics.get(objective_metric),
        backbone=backbone_of(run, registry),
        data_fp=data_fp,
        eval_fp=eval_fp,
    )


def objective_problem(run: PlainRun, metric: str, child: PlainRun | None = None) -> str | None:
    """Why a plain run cannot be ranked by ``metric`` (it has no such metric), or None."""
    if metric in run.metrics or (child is not None and metric in child.metrics):
        return None
    have = sorted(set(run.metrics) | set(child.metrics if child else ()))
    return (
        f"run {run.run_id} has no metric {metric!r} to rank it by; its metrics: {', '.join(have) or 'none'}; "
        "set objective.metric in best_model_selection.yaml to the run's quality metric"
    )


def group_label(study: str | None, backbone: str | None = None, *parts: str | None) -> str:
    """A readable label of a study or group: its name, the backbone and whatever else is known, joined."""
    return " · ".join(p for p in (study, backbone, *parts) if p)
