"""Training-completion hooks: enqueue a benchmark when a trial (or refit) run finishes, and never hurt training.

    hook = BenchmarkHook.from_settings()              # PODIUM_* settings, config/benchmark.yaml
    study.optimize(objective, callbacks=[hook])       # an Optuna callback
    hook(run_id)                                      # or a plain callable, after training

With podium's training helpers (:mod:`podium.training`) the trial carries its champion in ``user_attrs`` and
the hook needs only the broker; otherwise it reads the run's tags from MLflow (``user_attrs["mlflow_run_id"]``).

A broker or tracking store that is down, slow or refusing never stops a study: each call returns within
``timeout_s`` (2 s) with a warning that names the run and says ``podium backfill`` will send it; after a
failure, calls skip sending for ``backoff_s`` instead of paying the timeout on every trial. Misses are counted
here (``hook.missed``) and, once Redis answers again, in ``podium status``. ``on_error="raise"`` raises instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from celery import Celery

from podium.coordination import keys
from podium.core.clock import Clock
from podium.core.config import BenchmarkConfig
from podium.core.records import CHAMPION_ATTR, RUN_ID_ATTR, Champion
from podium.errors import RunRefused
from podium.producers.enqueue import Enqueued, enqueue_benchmark
from podium.settings.env import PodiumSettings, absolute_sqlite_uri
from podium.settings.files import load_benchmark_config, load_selection_config
from podium.tracking.plain_runs import adopt, optuna_trial_run
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

#: The longest one hook call may hold training up, in seconds.
TIMEOUT_S = 2.0
#: After a failed send, calls skip sending for this many seconds (each still warns and is counted).
BACKOFF_S = 60.0


@dataclass(frozen=True)
class Missed:
    """A benchmark request the hook could not send; ``podium backfill`` sends it later."""

    run_id: str
    reason: str


class BenchmarkHook:
    def __init__(
        self,
        app: Celery,
        config: BenchmarkConfig,
        *,
        tracking: MlflowTracking | Callable[[], MlflowTracking] | None = None,
        redis: Any = None,
        on_error: Literal["warn", "raise"] = "warn",
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        clock: Clock = time.monotonic,
        run_id_attr: str = RUN_ID_ATTR,
        objective_metric: str | None = None,
    ):
        self.app = app
        self.config = config
        self._tracking = tracking
        self._redis = redis
        self.on_error = on_error
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.clock = clock
        self.run_id_attr = run_id_attr
        self.enqueued: list[Enqueued] = []
        self.missed: list[Missed] = []
        #: Runs that cannot be benchmarked as they are (no model, no objective metric): not retried.
        self.refused: list[Missed] = []
        self.objective_metric = objective_metric
        self._unreported = 0
        self._retry_at = float("-inf")

    @classmethod
    def from_settings(
        cls, settings: PodiumSettings | None = None, config: BenchmarkConfig | None = None, **options: Any
    ) -> BenchmarkHook:
        """The hook of a training script: the broker and config of ``PODIUM_*`` settings; run look-ups in
        MLflow's active tracking store (the training code's), unless ``PODIUM_TRACKING_URI`` names another."""
        from podium.broker.app import create_app
        from podium.coordination.connection import connect

        settings = settings or PodiumSettings()
        uri = tracking_uri(settings)
        objective = load_selection_config(None, settings.config_dir).objective.metric
        options.setdefault("objective_metric", objective)
        return cls(
            create_app(settings),
            config or load_benchmark_config(None, settings.config_dir),
            tracking=lambda: MlflowTracking.from_settings(settings, objective, tracking_uri=uri),
            redis=lambda: connect(settings.redis_url, socket_timeout=TIMEOUT_S),
            **options,
        )

    # ------------------------------------------------------------------ calls

    def __call__(self, *args: Any) -> Enqueued | None:
        """``hook(run_id)`` or, as an Optuna callback, ``hook(study, frozen_trial)``."""
        if len(args) == 1 and isinstance(args[0], str):
            return self.enqueue(args[0])
        if len(args) == 2:
            return self._optuna(*args)
        raise TypeError("call the hook with a run id, or pass it to study.optimize(callbacks=[hook])")

    def enqueue(
        self, run_id: str, champion: Champion | None = None, find_run: Callable[[], str] | None = None
    ) -> Enqueued | None:
        """Send the benchmark request of ``run_id`` (or of ``champion``; or of the run ``find_run`` looks up,
        ``run_id`` then only names it); never raises unless ``on_error="raise"``. A run that cannot be
        benchmarked (``RunRefused``) is refused in one line and never slows the calls after it."""

        def send() -> Enqueued:
            path = None
            if champion is not None:
                chosen = champion
            else:  # a run written through podium's helpers, or a plain MLflow run adopted as it is
                found = run_id if find_run is None else find_run()
                adopted = adopt(
                    self._tracker(),
                    found,
                    objective_metric=self.objective_metric,
                    artifact_path=self.config.model.artifact_path,
                )
                chosen, path = adopted.champion, adopted.artifact_path
            store = self._tracker().store_ref() if self._tracking is not None else None
            # no broker-level retries: a send either goes now or is a miss, never a late surprise
            return enqueue_benchmark(
                self.app,
                chosen,
                self.config,
                retries=0 if self.on_error == "warn" else 3,
                store=store,
                artifact_path=path,
            )

        if self.on_error == "raise":
            return self._sent(send())
        if self.clock() < self._retry_at:
            self._miss(run_id, "the last request failed moments ago; not retrying until the back-off ends")
            return None
        done, value, error = _within(self.timeout_s, send)
        if not done:
            self._miss(run_id, f"no answer within {self.timeout_s:g} s", failed=True)
        elif isinstance(error, RunRefused):  # the run's problem, not the service's: later calls go on at once
            self._refuse(run_id, error)
        elif error is not None:
            self._miss(run_id, f"{type(error).__name__}: {error}", failed=True)
        else:
            return self._sent(value)
        return None

    def _optuna(self, study: Any, trial: Any) -> Enqueued | None:
        state = getattr(getattr(trial, "state", None), "name", "COMPLETE")
        if state != "COMPLETE":
            return None
        attrs = getattr(trial, "user_attrs", {})
        if CHAMPION_ATTR in attrs:
            champion = Champion.from_dict(attrs[CHAMPION_ATTR])
            return self.enqueue(champion.run_id, champion)
        run_id = attrs.get(self.run_id_attr) or getattr(trial, "system_attrs", {}).get(RUN_ID_ATTR)
        if not run_id and self._tracking is not None:  # optuna_integration.MLflowCallback's run of this trial
            study_name, number = getattr(study, "study_name", ""), trial.number
            return self.enqueue(f"of trial {number}", find_run=lambda: self._callback_run(study_name, number))
        if not run_id:
            log.warning(
                "Trial %s of study %s has no user attribute %r; open its runs with podium.training.trial_run / "
                "refit_run (or call trial.set_user_attr(%r, run.info.run_id)) to benchmark it.",
                trial.number,
                getattr(study, "study_name", "?"),
                self.run_id_attr,
                self.run_id_attr,
            )
            return None
        return self.enqueue(run_id)

    def _callback_run(self, study_name: str, number: int) -> str:
        run_id = optuna_trial_run(self._tracker(), study_name, number)
        if run_id is None:
            raise RunRefused(
                f"trial {number} of study {study_name!r} has no FINISHED MLflow run (experiment {study_name!r}, "
                f"tag number={number}); put podium's hook after MLflowCallback in callbacks=[...], or call "
                f"trial.set_user_attr({self.run_id_attr!r}, run.info.run_id)"
            )
        return run_id

    # ------------------------------------------------------------------ outcomes

    def _refuse(self, run_id: str, error: BaseException) -> None:
        self.refused.append(Missed(run_id, str(error)))
        log.warning("podium: not benchmarked: %s", error)

    def _sent(self, enqueued: Enqueued) -> Enqueued:
        self.enqueued.append(enqueued)
        self._retry_at = float("-inf")
        if self._unreported:  # Redis answers again: leave a count where `podium status` shows it
            done, _, error = _within(self.timeout_s, lambda: self._client().incrby(keys.HOOK_MISSED, self._unreported))
            if done and error is None:
                self._unreported = 0
        return enqueued

    def _miss(self, run_id: str, reason: str, failed: bool = False) -> None:
        if failed:
            self._retry_at = self.clock() + self.backoff_s
        self.missed.append(Missed(run_id, reason))
        self._unreported += 1
        log.warning(
            "podium: the benchmark of run %s was not enqueued (%s); training goes on, and `podium backfill` "
            "will send it once the broker and tracking store are back.",
            run_id,
            reason,
        )
        return None

    def close(self) -> None:
        """Close the hook's broker and Redis connections (at the end of a training script; optional)."""
        backend = self.app.backend
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None:
            consumer.stop()
        client = getattr(backend, "client", None)
        if client is not None:
            client.close()
        self.app.close()
        if self._redis is not None and not callable(self._redis):
            self._redis.close()

    @property
    def failures(self) -> int:
        return len(self.missed)

    def _tracker(self) -> MlflowTracking:
        if self._tracking is None:
            raise RuntimeError("this hook has no MLflow tracker to look runs up in; build it with from_settings()")
        if callable(self._tracking):
            self._tracking = self._tracking()
        return self._tracking

    def _client(self) -> Any:
        if callable(self._redis):
            self._redis = self._redis()
        return self._redis


def tracking_uri(settings: PodiumSettings) -> str:
    """The store the hook looks runs up in: ``PODIUM_TRACKING_URI`` when set (warned about once when it is not
    MLflow's active store), else MLflow's active tracking URI, the one the training code writes to."""
    import mlflow

    active = absolute_sqlite_uri(mlflow.get_tracking_uri())
    if "PODIUM_TRACKING_URI" not in os.environ:
        return active
    if settings.tracking_uri != active and not _warned.is_set():
        _warned.set()
        log.warning(
            "podium: PODIUM_TRACKING_URI (%s) is not MLflow's active tracking URI (%s); the hook reads runs from "
            "PODIUM_TRACKING_URI. Unset it to use the training code's store.",
            settings.tracking_uri,
            active,
        )
    return settings.tracking_uri


_warned = threading.Event()


def _within(seconds: float, fn: Callable[[], Any]) -> tuple[bool, Any, BaseException | None]:
    """Run ``fn`` on a daemon thread; (finished, value, error) after at most ``seconds``. A call still running
    then is left to finish or fail on its own (a late send is harmless: requests are idempotent by key)."""
    box: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name="podium-hook", daemon=True).start()
    if not finished.wait(seconds):
        return False, None, None
    return True, box.get("value"), box.get("error")
