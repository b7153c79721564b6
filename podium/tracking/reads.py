"""The reads of an MLflow store that select, the aggregator and the producers make: the FINISHED benchmark and
trial runs of experiments (one paged query per stage, never one query per run), the champions, a run by id, and
the facts the aggregator's check reads of the runs a batch of events names. Runs become records in
:mod:`podium.tracking.records`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from podium.core.existing import BenchmarkIndex
from podium.core.filters import all_of, run_id_in, status_is, tag_eq
from podium.core.plain import looks_like_run_id
from podium.core.records import BenchmarkRecord, Champion, TrialRecord
from podium.core.safety import require_safe
from podium.core.verification import DEFAULT_SKEW, RunFacts, SkewBounds
from podium.errors import TrackingError
from podium.tracking.records import champions, fact_tags
from podium.tracking.store_errors import now_ms
from podium.tracking.tables import StoredRun

if TYPE_CHECKING:
    from podium.tracking.tracker import MlflowTracking

#: Run ids per ``run_id IN (...)`` lookup.
RUN_ID_CHUNK = 500


class StoreReads:
    """The record-level reads of one tracker."""

    def __init__(self, tracker: MlflowTracking) -> None:
        self.tracker = tracker

    def _finished_stage(self, experiment_ids: Sequence[str], stage: str) -> Iterator[Any]:
        if not experiment_ids:
            return iter(())
        tags = self.tracker.tags
        return self.tracker.search(experiment_ids, all_of(tag_eq(tags.stage.key, stage), status_is("FINISHED")))

    def load_benchmarks(
        self, experiment_ids: Sequence[str], skew: SkewBounds = DEFAULT_SKEW, now: int | None = None
    ) -> list[BenchmarkRecord]:
        """Every FINISHED benchmark run of the experiments that carries the grouping tags, none that breaks a
        rule on its tags, each placed in time as the live aggregator places it (``stored_start``: a start
        after ``now`` (epoch ms), default this machine's clock, is not believed)."""
        runs = self._finished_stage(experiment_ids, self.tracker.tags.stage.benchmark)
        return self.tracker.records.benchmarks(map(StoredRun.of, runs), now_ms() if now is None else now, skew)

    def load_trials(self, experiment_ids: Sequence[str]) -> list[TrialRecord]:
        """Every FINISHED trial and refit run, newest-per-trial resolution is left to the core; and the plain
        MLflow runs (no podium tags) that a benchmark run of these experiments measured."""
        from podium.tracking.plain_runs import benchmarked_plain_trials

        records = self.tracker.records
        out = []
        for stage, kind in records.trial_stages():
            for run in self._finished_stage(experiment_ids, stage):
                record = records.trial_record(StoredRun.of(run), kind)
                if record is not None:
                    out.append(record)
        return out + benchmarked_plain_trials(self.tracker, experiment_ids)

    def load_trial(self, study: str, trial: str) -> list[TrialRecord]:
        """The FINISHED trial and refit runs of one trial (the aggregator's look-up for a new trial)."""
        t, records = self.tracker, self.tracker.records
        out = []
        for stage, kind in records.trial_stages():
            flt = all_of(
                tag_eq(t.tags.stage.key, stage),
                tag_eq(t.tags.grouping.study_key_hash, study),
                tag_eq(t.tags.grouping.trial_key_hash, trial),
                status_is("FINISHED"),
            )
            for run in t.search(t.experiment_ids(), flt):
                record = records.trial_record(StoredRun.of(run), kind)
                if record is not None:
                    out.append(record)
        if not out and looks_like_run_id(trial):  # a plain MLflow run: its trial_key_hash is its run id
            from podium.tracking.plain_runs import plain_trial

            return plain_trial(t, study, trial)
        return out

    def load_champions(self, experiment_ids: Sequence[str], study: str | None = None) -> list[Champion]:
        """One champion per trial: the newest refit run if any, else the newest trial run."""
        if study is not None:
            require_safe(study, "study_key_hash")
        return champions(self.load_trials(experiment_ids), study)

    def champion(self, run_id: str) -> Champion:
        """The champion made of one run (trial or refit) given by id."""
        t = self.tracker
        require_safe(run_id, "run id")
        try:
            with t.in_store(f"reading run {run_id}"):
                run = t.client.get_run(run_id)
        except TrackingError as exc:
            if getattr(exc.__cause__, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise TrackingError(f"run {run_id} not found in the MLflow store {t.uri}") from None
            raise
        return t.records.champion(StoredRun.of(run))

    def runs_by_id(
        self, run_ids: Sequence[str], tags: Sequence[str] | None = None, metrics: Sequence[str] | None = None
    ) -> dict[str, StoredRun]:
        """The runs with these ids, whatever their status, in one query per chunk (ids not found are absent):
        read from the run tables of a database store, else with ``search_runs``. With ``tags`` or ``metrics``,
        a run holds only those it has of the names given."""
        t = self.tracker
        out: dict[str, StoredRun] = {}
        ids = sorted(set(run_ids))
        experiments = t.recent_experiment_ids()
        for start in range(0, len(ids), RUN_ID_CHUNK):
            chunk = ids[start : start + RUN_ID_CHUNK]
            if t.tables is not None:
                with t.in_store(f"reading {len(chunk)} run(s) by id"):
                    out.update(t.tables.runs(chunk, experiments, tags, metrics))
                continue
            doing = f"looking up {len(chunk)} run(s) by id"
            page = t.first_runs(experiments, run_id_in(chunk), len(chunk), doing, every_status=True)
            # as the tables read them: no params, no end time
            out.update(
                (run.info.run_id, replace(StoredRun.of(run), params={}, end_time=None).only(tags, metrics))
                for run in page
            )
        return out

    def run_facts(self, run_ids: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, RunFacts]:
        """What MLflow says about each of these runs (status, record, identity tags); unknown ids are absent.
        ``metrics``: the only metrics the records need (default: all)."""
        records = self.tracker.records
        found = self.runs_by_id(run_ids, fact_tags(records.tags), metrics)
        return {run_id: records.facts(run) for run_id, run in found.items()}

    def benchmark_index(self) -> BenchmarkIndex:
        return BenchmarkIndex.build(self.load_benchmarks(self.tracker.experiment_ids()))
