"""Test doubles shipped with podium, as bytewax ships ``TestingSource``: parts that hold their state in memory
and keep the contract of the real ones (the same contract tests run over both).

- :class:`MemoryRunStore`: a :class:`~podium.core.store.RunStore` holding runs in memory, read by the same
  rules as an MLflow store (runs parsed by :mod:`podium.tracking.records`, the existence check answered by
  :func:`podium.tracking.existence.answer`). Unit tests of select, the aggregator and the worker path use it
  instead of a sqlite store; ``tests/unit/test_run_store_contract.py`` runs one set of tests over both.
- Locks and leadership (a section of their own, at the end): :class:`StalledFencing` (a worker whose lock's
  holder stalls past its TTL), :class:`StoreLockedFencing` (the store locked right after the fenced prepare),
  :class:`Unfenced` (publish with no aggregator leading).

Nothing here opens a connection or imports MLflow.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from podium.aggregator.leadership import Leadership
from podium.coordination.commit import FencedCommit
from podium.coordination.lock import FencedLock
from podium.core.existing import BenchmarkIndex, ExistingBenchmark, holds_result, pick_with_result
from podium.core.identity import BenchmarkIdentity
from podium.core.plain import STUDY_TAGS, group_label
from podium.core.records import BenchmarkRecord, Champion, TrialRecord
from podium.core.safety import require_safe
from podium.core.selection import Selection
from podium.core.store import DEFAULT_RESULT_METRICS, RunStore, ScopeId, ScopeLabels
from podium.core.tags import TagsRegistry
from podium.core.verification import DEFAULT_SKEW, RunFacts, SkewBounds
from podium.errors import TrackingError
from podium.tracking.existence import KEY_RUNS_READ, answer
from podium.tracking.records import RunRecords, champions, fact_tags
from podium.tracking.tables import StoredRun
from podium.workers.fencing import RedisFencing  # the lock doubles below (a section of their own)

log = logging.getLogger(__name__)

#: What an MLflow store keeps of a tag value (longer ones are cut, as ``podium.tracking.writes`` cuts them).
MAX_TAG_VALUE = 5000
_BATCH = re.compile(r"^latency_batch_(\d+)_ms$")


def wall_clock_ms() -> int:
    """This machine's clock in epoch milliseconds (the default clock of :class:`MemoryRunStore`)."""
    return int(time.time() * 1000)


@dataclass
class MemoryRun:
    """One run as MLflow holds it: where it is, its status and times, tags, latest metrics, params, artifacts."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    end_time: int | None = None
    lifecycle_stage: str = "active"
    #: artifact file name -> the JSON document (or the text: a config.pbtxt) written there
    artifacts: dict[str, Any] = field(default_factory=dict)

    def stored(self) -> StoredRun:
        return StoredRun(
            self.run_id,
            self.status,
            self.start_time,
            self.lifecycle_stage,
            dict(self.tags),
            dict(self.metrics),
            dict(self.params),
            self.end_time,
        )


class MemoryRunStore:
    """A run store in memory. Seed it with :meth:`add_trial` and :meth:`add_run` (what training code and other
    tools write); podium's own reads and writes go through the :class:`~podium.core.store.RunStore` methods."""

    def __init__(
        self,
        tags: TagsRegistry | None = None,
        benchmark_experiment: str = "podium-benchmarks",
        objective_metric: str = "macro-f1",
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.records = RunRecords(tags or TagsRegistry(), objective_metric)
        self.benchmark_experiment = benchmark_experiment
        #: Epoch milliseconds: stamps the runs written without a start time, and their end times.
        self.clock_ms = clock_ms
        #: experiment name -> id (MLflow's Default experiment is there from the start)
        self.experiments: dict[str, str] = {"Default": "0"}
        self.runs: dict[str, MemoryRun] = {}
        self._ids = itertools.count(1)

    @property
    def tags(self) -> TagsRegistry:
        return self.records.tags

    @property
    def objective_metric(self) -> str:
        return self.records.objective_metric

    @property
    def uri(self) -> str:
        return f"memory://{id(self):x}"

    # ------------------------------------------------------------------ seeding (what others write)

    def experiment(self, name: str) -> str:
        """The id of the experiment ``name``, created when new."""
        return self.experiments.setdefault(name, str(len(self.experiments)))

    def add_run(
        self,
        experiment: str,
        tags: Mapping[str, str],
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, str] | None = None,
        status: str = "FINISHED",
        start_time: int | None = None,
    ) -> str:
        """A run as any MLflow client could write it, in the experiment named ``experiment``; returns its id."""
        run_id = f"{next(self._ids):032x}"  # 32 hex characters, as MLflow's run ids
        start = self.clock_ms() if start_time is None else start_time
        self.runs[run_id] = MemoryRun(
            run_id,
            self.experiment(experiment),
            status,
            start,
            {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items()},
            dict(metrics or {}),
            dict(params or {}),
            end_time=None if status == "RUNNING" else max(start, self.clock_ms()),
        )
        return run_id

    def add_trial(
        self,
        study: str,
        trial: str,
        objective: float | None,
        stage: str | None = None,
        experiment: str = "training",
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> str:
        """A FINISHED trial run (``stage``: the registry's hpo_trial by default, or its refit) of ``study`` with its
        objective metric, as training code writes it."""
        t = self.tags
        base = {t.stage.key: stage or t.stage.hpo_trial, t.grouping.study_key_hash: study}
        metrics = {} if objective is None else {self.objective_metric: objective}
        return self.add_run(experiment, base | {t.grouping.trial_key_hash: trial} | dict(tags or {}), metrics, params)

    def run(self, run_id: str) -> MemoryRun:
        """The run with this id (``TrackingError`` when there is none)."""
        found = self.runs.get(run_id)
        if found is None:
            raise TrackingError(f"run {run_id} not found in the store {self.uri}")
        return found

    # ------------------------------------------------------------------ reads

    def experiment_ids(self, names: Sequence[str] | None = None) -> list[str]:
        if not names:
            return sorted(self.experiments.values(), key=int)
        missing = [n for n in names if n not in self.experiments]
        if missing:
            raise TrackingError(
                f"no active experiment named {', '.join(map(repr, missing))} in {self.uri}; "
                f"active experiments: {', '.join(sorted(self.experiments))}"
            )
        return [self.experiments[n] for n in names]

    def _finished(self, experiment_ids: Iterable[str], tags: Mapping[str, str | None]) -> list[MemoryRun]:
        """Active FINISHED runs of the experiments whose tags are ``tags`` (None: the tag is absent), newest first
        (MLflow's order: start time descending, then run id)."""
        ids = set(experiment_ids)
        found = [
            run
            for run in self.runs.values()
            if run.experiment_id in ids
            and run.status == "FINISHED"
            and run.lifecycle_stage == "active"
            and all(run.tags.get(k) == v for k, v in tags.items())
        ]
        return sorted(found, key=lambda run: (-run.start_time, run.run_id))

    def load_benchmarks(
        self, experiment_ids: Sequence[str], skew: SkewBounds = DEFAULT_SKEW, now_ms: int | None = None
    ) -> list[BenchmarkRecord]:
        runs = self._finished(experiment_ids, {self.tags.stage.key: self.tags.stage.benchmark})
        now = self.clock_ms() if now_ms is None else now_ms
        return self.records.benchmarks((run.stored() for run in runs), now, skew)

    def _trials(self, experiment_ids: Sequence[str], tags: Mapping[str, str | None]) -> list[TrialRecord]:
        out = []
        for stage, kind in self.records.trial_stages():
            for run in self._finished(experiment_ids, {self.tags.stage.key: stage, **tags}):
                if (record := self.records.trial_record(run.stored(), kind)) is not None:
                    out.append(record)
        return out

    def load_trials(self, experiment_ids: Sequence[str]) -> list[TrialRecord]:
        return self._trials(experiment_ids, {})

    def load_trial(self, study: str, trial: str) -> list[TrialRecord]:
        g = self.tags.grouping
        return self._trials(self.experiment_ids(), {g.study_key_hash: study, g.trial_key_hash: trial})

    def load_champions(self, experiment_ids: Sequence[str], study: str | None = None) -> list[Champion]:
        if study is not None:
            require_safe(study, "study_key_hash")
        return champions(self.load_trials(experiment_ids), study)

    def champion(self, run_id: str) -> Champion:
        require_safe(run_id, "run id")
        return self.records.champion(self.run(run_id).stored())

    def run_facts(self, run_ids: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, RunFacts]:
        wanted = fact_tags(self.tags)
        return {
            run_id: self.records.facts(self.runs[run_id].stored().only(wanted, metrics))
            for run_id in sorted(set(run_ids))
            if run_id in self.runs
        }

    def describe_selections(self, selections: Iterable[Selection]) -> dict[ScopeId, ScopeLabels]:
        """The labels ``podium.tracking.labels`` gives: the study's tag (else its experiment's name), the scope's
        backend, format and batch sizes, and each candidate trial's params and objective."""
        out: dict[ScopeId, ScopeLabels] = {}
        names = {v: k for k, v in self.experiments.items()}
        for s in selections:
            trial = self.runs.get(s.best.trial_run_id)
            study = None
            if trial is not None:
                study = next((trial.tags[t] for t in STUDY_TAGS if trial.tags.get(t)), names.get(trial.experiment_id))
            label = study
            bench = self.runs.get(s.best.benchmark_run_id)
            if bench is not None:
                b = self.tags.benchmark
                sizes = sorted(int(m.group(1)) for k in bench.metrics if (m := _BATCH.match(k)))
                batches = f"batch {','.join(map(str, sizes))}" if sizes else None
                label = group_label(study, None, bench.tags.get(b.backend), bench.tags.get(b.model_format), batches)
            trials = {c.trial_run_id: self._trial_facts(c.trial_run_id) for c in s.candidates}
            out[(s.study_key_hash, s.benchmark_config_hash)] = ScopeLabels(study, label, trials)
        return out

    def _trial_facts(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            return {"params": {}, "metrics": {}}
        metric = run.metrics.get(self.objective_metric)
        return {"params": dict(run.params), "metrics": {} if metric is None else {self.objective_metric: metric}}

    def warm_lookups(self) -> None:
        """Nothing to make ready in memory."""

    # ------------------------------------------------------------------ the worker path

    def benchmark_exists(
        self,
        identity: BenchmarkIdentity,
        champion: Champion,
        legacy_epoch: int = 0,
        result_metrics: Sequence[str] = DEFAULT_RESULT_METRICS,
    ) -> ExistingBenchmark | None:
        t, ids = self.tags, self.experiment_ids()
        keyed_runs = self._finished(ids, {t.benchmark.key: identity.key})[:KEY_RUNS_READ]
        keyed = pick_with_result(
            ((r.run_id, holds_result(r.metrics, result_metrics)) for r in keyed_runs), "benchmark_key"
        )
        legacy = None
        study_legacy = {t.stage.key: t.stage.benchmark, t.grouping.study_key_hash: champion.study_key_hash}
        legacy_runs = self._finished(ids, study_legacy | {t.benchmark.key: None}) if keyed.found is None else []
        if legacy_runs:  # only a study that has legacy runs is looked into (as the MLflow store does)
            trial_runs = [r for r in legacy_runs if r.tags.get(t.grouping.trial_key_hash) == champion.trial_key_hash]
            records = [rec for r in trial_runs if (rec := self.records.benchmark_record(r.stored())) is not None]
            legacy = BenchmarkIndex.build(records).find(identity, champion, result_metrics)
        return answer(keyed, legacy, identity, champion, result_metrics)

    def start_benchmark_run(
        self, tags: Mapping[str, str], run_name: str | None = None, start_time: int | None = None
    ) -> tuple[str, int]:
        named = dict(tags) | ({"mlflow.runName": run_name} if run_name else {})
        run_id = self.add_run(self.benchmark_experiment, named, status="RUNNING", start_time=start_time or None)
        return run_id, self.runs[run_id].start_time

    def record_summary(self, run_id: str, summary: Mapping[str, Any], filename: str) -> None:
        self.run(run_id).artifacts[filename] = dict(summary)

    def record_text(self, run_id: str, text: str, filename: str) -> None:
        self.run(run_id).artifacts[filename] = text

    def record_results(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        summary: Mapping[str, Any] | None,
        filename: str,
        extra_tags: Mapping[str, str] | None = None,
        *,
        finish: bool = False,
    ) -> None:
        run = self.run(run_id)
        if summary is not None:
            self.record_summary(run_id, summary, filename)
        run.metrics.update((k, float(v)) for k, v in metrics.items())
        run.tags.update((k, str(v)[:MAX_TAG_VALUE]) for k, v in (extra_tags or {}).items())
        if finish:
            self._end(run, "FINISHED")

    def finish_run(self, run_id: str) -> None:
        self._end(self.run(run_id), "FINISHED")

    def fail_run(self, run_id: str, reason: str, status: str = "FAILED", strict: bool = False) -> None:
        run = self.runs.get(run_id)
        if run is None:
            if strict:
                raise TrackingError(f"marking run {run_id} {status} in the store {self.uri} failed: no such run")
            log.error("Could not mark run %s %s (%s): no such run", run_id, status, reason)
            return
        run.tags[self.tags.benchmark.error] = reason[:MAX_TAG_VALUE]
        self._end(run, status)

    def _end(self, run: MemoryRun, status: str) -> None:
        run.status, run.end_time = status, self.clock_ms()

    def log_benchmark_run(
        self,
        tags: Mapping[str, str],
        metrics: Mapping[str, float],
        summary: Mapping[str, Any],
        filename: str = "benchmark.json",
        run_name: str | None = None,
    ) -> str:
        """Create, fill and finish a benchmark run (as ``MlflowTracking.log_benchmark_run``)."""
        run_id, _ = self.start_benchmark_run(tags, run_name)
        self.record_results(run_id, metrics, summary, filename)
        self.finish_run(run_id)
        return run_id


def _holds_to_the_port(store: MemoryRunStore) -> RunStore:
    """Never called: mypy checks here that the in-memory store implements the whole port."""
    return store


# -------------------------------------------------------------------------------------------------------------
# Locks, commits and leadership: doubles of the worker's fencing (podium.workers.fencing) and the aggregator's
# leadership (podium.aggregator.leadership), passed where production passes the real ones.
# -------------------------------------------------------------------------------------------------------------


class StalledLock(FencedLock):
    """A lock whose holder stalls: its watchdog believes it renewed, while the TTL runs out in Redis (a
    process paused by GC or SIGSTOP). Whatever it then commits must be refused by the fence."""

    def renew(self) -> bool:
        return True


class StalledFencing(RedisFencing):
    """A worker's fencing whose locks are :class:`StalledLock`."""

    def lock(self, client: redis.Redis, benchmark_key: str, ttl_ms: int, marker_ttl_s: int) -> FencedLock:
        return StalledLock.for_benchmark(client, benchmark_key, ttl_ms, marker_ttl_s)


class StoreLockedAtCommit(FencedCommit):
    """A commit whose ``prepare`` (the step just before the run is marked FINISHED) is followed by
    ``store_lock()``: someone taking an exclusive lock on the store, as a backup job or a second writer would."""

    def __init__(self, lock: FencedLock, store_lock: Callable[[], None]):
        super().__init__(lock)
        self.store_lock = store_lock

    def prepare(self, run_id: str) -> None:
        super().prepare(run_id)
        self.store_lock()


class StoreLockedFencing(RedisFencing):
    """A worker's fencing whose commits are :class:`StoreLockedAtCommit` with ``store_lock``."""

    def __init__(self, store_lock: Callable[[], None]):
        self.store_lock = store_lock

    def commit(self, lock: FencedLock) -> FencedCommit:
        return StoreLockedAtCommit(lock, self.store_lock)


class Unfenced(Leadership):
    """Leadership for a test or tool that publishes with no aggregator leading (the leader key is not
    checked). Never use it beside a running aggregator: its publishes would go through whoever leads."""

    @property
    def token(self) -> str:
        return ""
