"""Training-completion hooks: enqueue a benchmark when a trial (or refit) run finishes.

hook = BenchmarkHook.from_settings()              # PODIUM_* settings, config/benchmark.yaml
hook(run_id)                                      # a plain callable, after training
study.optimize(objective, callbacks=[hook])       # an Optuna callback: reads trial.user_attrs["mlflow_run_id"]
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from podium.core.config import BenchmarkConfig
from podium.producers.enqueue import Enqueued, enqueue_benchmark
from podium.settings.env import PodiumSettings
from podium.settings.files import load_benchmark_config
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

#: Where an Optuna objective records the MLflow run of a trial (``trial.set_user_attr(...)``).
RUN_ID_ATTR = "mlflow_run_id"


class BenchmarkHook:
    def __init__(self, app: Celery, tracking: MlflowTracking, config: BenchmarkConfig, run_id_attr: str = RUN_ID_ATTR):
        self.app = app
        self.tracking = tracking
        self.config = config
        self.run_id_attr = run_id_attr
        self.enqueued: list[Enqueued] = []

    @classmethod
    def from_settings(
        cls, settings: PodiumSettings | None = None, config: BenchmarkConfig | None = None
    ) -> BenchmarkHook:
        from podium.broker.app import create_app

        settings = settings or PodiumSettings()
        tracking = MlflowTracking.from_settings(settings)
        return cls(create_app(settings), tracking, config or load_benchmark_config(None, settings.config_dir))

    def __call__(self, *args: Any) -> Enqueued | None:
        """``hook(run_id)`` or, as an Optuna callback, ``hook(study, frozen_trial)``."""
        if len(args) == 1 and isinstance(args[0], str):
            return self.enqueue(args[0])
        if len(args) == 2:
            return self._optuna(*args)
        raise TypeError("call the hook with a run id, or pass it to study.optimize(callbacks=[hook])")

    def enqueue(self, run_id: str) -> Enqueued:
        enqueued = enqueue_benchmark(self.app, self.tracking.champion(run_id), self.config)
        self.enqueued.append(enqueued)
        return enqueued

    def _optuna(self, study: Any, trial: Any) -> Enqueued | None:
        state = getattr(getattr(trial, "state", None), "name", "COMPLETE")
        if state != "COMPLETE":
            return None
        run_id = trial.user_attrs.get(self.run_id_attr)
        if not run_id:
            log.warning(
                "Trial %s of study %s has no user attribute %r; set it to the trial's MLflow run id "
                "(trial.set_user_attr(%r, run.info.run_id)) to benchmark it.",
                trial.number,
                getattr(study, "study_name", "?"),
                self.run_id_attr,
                self.run_id_attr,
            )
            return None
        return self.enqueue(run_id)
