"""Plain MLflow runs, the MLflow side: read a run written by ordinary MLflow code, find its model where MLflow
users put it, and make it a champion (the rules are pure, in :mod:`podium.core.plain`).

Where a model is looked for, in order: the path ``model.artifact_path`` (``--artifact-path``) names; the run's
logged models (MLflow 3's ``models:/m-…``, from the run's logged-model outputs); an MLflow model folder among
the run's artifacts (``model/MLmodel``, older stores); a TorchScript (``.pt``, ``.pts``, ``.torchscript``) or
ONNX (``.onnx``) file artifact. A run with none of them is refused in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mlflow.entities import Run

from podium.core.filters import all_of, run_id_in, status_is, tag_eq, tag_is_null
from podium.core.plain import (
    PARENT_TAG,
    SOURCE_PLAIN,
    SOURCE_TAG,
    PlainRun,
    is_podium_run,
    objective_problem,
    plain_champion,
    plain_trial_records,
    study_label,
)
from podium.core.records import DEFAULT_ARTIFACT_PATH, Champion, TrialRecord
from podium.core.safety import require_safe
from podium.errors import RunRefused, TrackingError
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

#: File artifacts that are models podium can measure as they are.
MODEL_SUFFIXES = (".pt", ".pts", ".torchscript", ".onnx")
#: The MLflow model folder's description file.
MLMODEL = "MLmodel"
#: Artifact folders looked into for a model file (the run's root and these).
MODEL_FOLDERS = ("", "model", "models")


@dataclass(frozen=True)
class Adopted:
    """A run made ready to benchmark: its champion, where its model is (None: the configured default), and the
    readable name of its study."""

    champion: Champion
    artifact_path: str | None
    label: str | None = None
    plain: bool = False


def plain_run(tracking: MlflowTracking, run: Run) -> PlainRun:
    datasets = tuple(
        (d.dataset.name, d.dataset.digest, next((t.value for t in d.tags if t.key == "mlflow.data.context"), ""))
        for d in (run.inputs.dataset_inputs if run.inputs else [])
    )
    return PlainRun(
        run_id=run.info.run_id,
        experiment_id=str(run.info.experiment_id),
        experiment_name=experiment_name(tracking, str(run.info.experiment_id)),
        status=run.info.status,
        start_time=run.info.start_time or 0,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        datasets=datasets,
        logged_models=tuple(o.model_id for o in (run.outputs.model_outputs if run.outputs else [])),
    )


_names: dict[tuple[str, str], str] = {}


def experiment_name(tracking: MlflowTracking, experiment_id: str) -> str:
    key = (tracking.uri, experiment_id)
    if key not in _names:
        try:
            _names[key] = tracking.client.get_experiment(experiment_id).name
        except Exception:  # a label only: never worth failing for
            return ""
    return _names[key]


def read_run(tracking: MlflowTracking, run_id: str, what: str = "--run-id") -> Run:
    require_safe(run_id, what)
    try:
        with tracking.in_store(f"reading run {run_id}"):
            return tracking.client.get_run(run_id)
    except TrackingError as exc:
        if getattr(exc.__cause__, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise RunRefused(
                f"run {run_id} is not in the MLflow store {tracking.uri}; check the run id, or point "
                "--tracking-uri (PODIUM_TRACKING_URI) at the store the training wrote to"
            ) from None
        raise


def adopt(
    tracking: MlflowTracking,
    run_id: str,
    *,
    objective_metric: str | None = None,
    artifact_path: str | None = None,
    require_objective: bool = True,
) -> Adopted:
    """The champion of ``run_id``: a run written through podium's helpers as before (its tags), any other
    FINISHED run as a plain run (its model found, its objective metric checked). Raises ``RunRefused`` with
    one line when the run cannot be benchmarked."""
    run = read_run(tracking, run_id)
    if is_podium_run(run.data.tags, tracking.tags):
        return Adopted(tracking.champion(run_id), artifact_path)
    trial = plain_run(tracking, run)
    if trial.status != "FINISHED":
        raise RunRefused(f"run {run_id} is {trial.status}, not FINISHED; benchmark it once it has ended")
    model_run, path = trial, None
    for child in _children_newest_first(tracking, trial):
        path = find_model(tracking, child, artifact_path)
        if path is not None:
            model_run = child
            break
    if path is None:
        path = find_model(tracking, trial, artifact_path)
    if path is None:
        where = f"no artifact {artifact_path!r}" if artifact_path else "no logged model and no .pt/.onnx artifact"
        raise RunRefused(
            f"run {run_id} has no model to benchmark ({where}); log it with mlflow.pytorch.log_model or "
            "mlflow.onnx.log_model, or set model.artifact_path in benchmark.yaml (podium bench --artifact-path) "
            "to the artifact that holds it"
        )
    metric = objective_metric or tracking.objective_metric
    problem = objective_problem(trial, metric, model_run if model_run is not trial else None)
    if problem is not None and require_objective:
        raise RunRefused(problem)
    champion = plain_champion(trial, model_run, tracking.tags)
    return Adopted(champion, path, study_label(trial), plain=True)


def _children_newest_first(tracking: MlflowTracking, run: PlainRun) -> list[PlainRun]:
    """The run's FINISHED child runs (a refit may hold the trial's model), newest first."""
    flt = all_of(tag_eq(PARENT_TAG, run.run_id), status_is("FINISHED"))
    children = [plain_run(tracking, r) for r in tracking.search([run.experiment_id], flt)]
    return sorted(children, key=lambda c: (c.start_time, c.run_id), reverse=True)


def find_model(tracking: MlflowTracking, run: PlainRun, artifact_path: str | None = None) -> str | None:
    """Where the run's model is, as an artifact path (or a ``models:/`` URI), or None when it has none."""
    client = tracking.client
    if artifact_path:
        return artifact_path if _artifact_exists(tracking, run.run_id, artifact_path) else None
    if run.logged_models:
        return f"models:/{run.logged_models[-1]}"
    files: list[str] = []
    for folder in MODEL_FOLDERS:
        try:
            infos = client.list_artifacts(run.run_id, folder or None)
        except Exception:  # an unreadable folder is no model
            continue
        for info in infos:
            if info.is_dir and _has_mlmodel(tracking, run.run_id, info.path):
                return info.path
            if not info.is_dir and info.path.lower().endswith(MODEL_SUFFIXES):
                files.append(info.path)
        if folder and any(i.path == f"{folder}/{MLMODEL}" for i in infos):
            return folder
    if DEFAULT_ARTIFACT_PATH in files:
        return DEFAULT_ARTIFACT_PATH
    return sorted(files)[0] if files else None


def _has_mlmodel(tracking: MlflowTracking, run_id: str, folder: str) -> bool:
    try:
        return any(i.path == f"{folder}/{MLMODEL}" for i in tracking.client.list_artifacts(run_id, folder))
    except Exception:
        return False


def _artifact_exists(tracking: MlflowTracking, run_id: str, path: str) -> bool:
    if path.startswith("models:/"):
        return True
    parent = path.rsplit("/", 1)[0] if "/" in path else None
    try:
        return any(i.path == path for i in tracking.client.list_artifacts(run_id, parent))
    except Exception:
        return False


# ------------------------------------------------------------------ selection's side


def plain_trials(tracking: MlflowTracking, champions: Mapping[str, str]) -> list[TrialRecord]:
    """The trial records of plain trials, given ``{trial run id: champion run id}``: one query for all."""
    ids = sorted(set(champions) | set(champions.values()))
    runs: dict[str, Run] = {}
    experiments = tracking.recent_experiment_ids()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        runs.update((r.info.run_id, r) for r in tracking.search(experiments, run_id_in(chunk)))
    out: list[TrialRecord] = []
    for trial_id, champion_id in sorted(champions.items()):
        trial = runs.get(trial_id)
        if trial is None or trial.info.status != "FINISHED" or is_podium_run(trial.data.tags, tracking.tags):
            continue
        model = runs.get(champion_id)
        out += plain_trial_records(
            plain_run(tracking, trial),
            plain_run(tracking, model) if model is not None else None,
            tracking.objective_metric,
            tracking.tags,
        )
    return out


def benchmarked_plain_trials(tracking: MlflowTracking, experiment_ids: Sequence[str]) -> list[TrialRecord]:
    """The trials of every plain run that a FINISHED benchmark run of these experiments measured."""
    if not experiment_ids:
        return []
    b = tracking.tags.benchmark
    flt = all_of(
        tag_eq(tracking.tags.stage.key, tracking.tags.stage.benchmark),
        tag_eq(SOURCE_TAG, SOURCE_PLAIN),
        status_is("FINISHED"),
    )
    champions: dict[str, str] = {}
    for run in tracking.search(experiment_ids, flt):
        trial = run.data.tags.get(tracking.tags.grouping.trial_key_hash)
        champion = run.data.tags.get(b.champion_run_id)
        if trial and champion:
            champions[trial] = champion
    return plain_trials(tracking, champions) if champions else []


def plain_trial(tracking: MlflowTracking, study: str, trial: str) -> list[TrialRecord]:
    """The records of one plain trial named by its run id (the aggregator's look-up), when it is of ``study``."""
    try:
        run = read_run(tracking, trial, "trial_key_hash")
    except RunRefused:
        return []
    if is_podium_run(run.data.tags, tracking.tags):
        return []
    plain = plain_run(tracking, run)
    children = _children_newest_first(tracking, plain)
    records = plain_trial_records(plain, children[0] if children else None, tracking.objective_metric, tracking.tags)
    return [r for r in records if r.study_key_hash == study]


# ------------------------------------------------------------------ producers' side


def optuna_trial_run(tracking: MlflowTracking, study_name: str, number: int) -> str | None:
    """The run ``optuna_integration.MLflowCallback`` wrote for trial ``number`` of ``study_name``: in the
    experiment named after the study, tagged ``number``; the newest FINISHED one."""
    exp = tracking.client.get_experiment_by_name(study_name)
    if exp is None:
        return None
    flt = all_of(tag_eq("number", str(int(number))), status_is("FINISHED"))
    runs = list(tracking.search([str(exp.experiment_id)], flt))
    if not runs:
        return None
    return max(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id


def plain_champions(
    tracking: MlflowTracking, experiment_ids: Iterable[str], artifact_path: str | None = None
) -> list[Adopted]:
    """Every FINISHED plain run of the experiments that can be benchmarked (``podium backfill``); child runs
    are their parents' champions, runs that cannot be benchmarked are logged once each and left out."""
    own = tracking.benchmark_experiment_id()
    ids = [e for e in experiment_ids if e != own]
    if not ids:
        return []
    flt = all_of(tag_is_null(tracking.tags.stage.key), tag_is_null(tracking.tags.grouping.study_key_hash))
    runs = [r for r in tracking.search(ids, all_of(flt, status_is("FINISHED")))]
    present = {r.info.run_id for r in runs}
    out = []
    for run in sorted(runs, key=lambda r: r.info.run_id):
        if run.data.tags.get(PARENT_TAG) in present:
            continue  # a child: its parent's champion
        try:
            out.append(adopt(tracking, run.info.run_id, artifact_path=artifact_path))
        except RunRefused as exc:
            log.warning("Not benchmarked: %s.", exc)
    return out
