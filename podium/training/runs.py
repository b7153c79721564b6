"""The MLflow runs of a training study, tagged the way podium reads them, with no tag name written by hand.

    with podium.training.trial_run(trial, study_hash, data_fp=DATA_FP, eval_fp=EVAL_FP):
        ...train, mlflow.log_metric("macro-f1", f1)...
    with podium.training.refit_run(trial, study_hash, data_fp=DATA_FP, eval_fp=EVAL_FP) as run:
        ...save the model, mlflow.log_artifact(path, "model")...

Runs go to MLflow's active tracking URI (``mlflow.set_tracking_uri`` / ``MLFLOW_TRACKING_URI``). The trial hash
is computed from the parameters the trial sampled, so open the run after ``trial.suggest_*``. When a run ends
without an error, the trial records it as its champion (the refit run wins over the trial run) in
``trial.user_attrs``, where :class:`podium.producers.BenchmarkHook` reads it without asking MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from podium.core.identity import UNKNOWN_FINGERPRINT, trial_key_hash
from podium.core.records import CHAMPION_ATTR, RUN_ID_ATTR, Champion
from podium.core.tags import TagsRegistry
from podium.errors import ConfigError


def _stage_run(stage: str, doc: str) -> Callable[..., AbstractContextManager[Any]]:
    @contextmanager
    def run(
        trial: Any,
        study_hash: str,
        *,
        params: Mapping[str, Any] | None = None,
        data_fp: str | None = None,
        eval_fp: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
        registry: TagsRegistry | None = None,
    ) -> Iterator[Any]:
        with _run(stage, trial, study_hash, params, data_fp, eval_fp, tags, run_name, registry) as active:
            yield active

    run.__doc__ = doc
    return run


trial_run = _stage_run("hpo_trial", "An ``hpo_trial`` run of ``trial`` (the objective metric is read from it).")
refit_run = _stage_run(
    "refit", "A ``refit`` run of the same trial: it holds the model artifact (``model/model.pt``) and is benchmarked."
)


@contextmanager
def _run(
    stage: str,
    trial: Any,
    study_hash: str,
    params: Mapping[str, Any] | None,
    data_fp: str | None,
    eval_fp: str | None,
    extra: Mapping[str, str] | None,
    run_name: str | None,
    registry: TagsRegistry | None,
) -> Iterator[Any]:
    import mlflow

    chosen = dict(getattr(trial, "params", {}) if params is None else params)
    if not chosen:
        raise ConfigError(
            f"{stage} run of trial {getattr(trial, 'number', '?')}: no parameters to hash; sample them "
            "(trial.suggest_*) before opening the run, or pass params=..., else every trial gets one trial_key_hash"
        )
    t = registry or TagsRegistry()
    trial_hash = trial_key_hash(study_hash, chosen)
    tags = {
        t.stage.key: getattr(t.stage, stage),
        t.grouping.study_key_hash: study_hash,
        t.grouping.trial_key_hash: trial_hash,
        **({t.fingerprint.data: data_fp} if data_fp else {}),
        **({t.fingerprint.eval: eval_fp} if eval_fp else {}),
        **(extra or {}),
    }
    number = getattr(trial, "number", None)
    name = run_name or (f"{stage}-{number}" if number is not None else stage)
    with mlflow.start_run(run_name=name, tags=tags) as run:
        yield run
    if trial is not None and hasattr(trial, "set_user_attr"):  # reached only when the block raised nothing
        champion = Champion(
            run.info.run_id, study_hash, trial_hash, data_fp or UNKNOWN_FINGERPRINT, eval_fp or UNKNOWN_FINGERPRINT
        )
        trial.set_user_attr(RUN_ID_ATTR, run.info.run_id)
        trial.set_user_attr(CHAMPION_ATTR, champion.as_dict())
