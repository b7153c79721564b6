"""Runs read from a store made into the core's records: benchmark and trial records, the facts the live check
reads, the champions of a study.

No I/O and no MLflow here: a run is read as a :class:`~podium.tracking.tables.StoredRun`, so the MLflow store
and the in-memory one (:mod:`podium.testing`) parse runs the same way, and refuse the same ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from podium.core.bounded import Bounded
from podium.core.identity import UNKNOWN_FINGERPRINT
from podium.core.records import BenchmarkRecord, Champion, RefusedRun, Rule, TrialRecord, refused_tag
from podium.core.safety import require_safe
from podium.core.state import TrialSide
from podium.core.tags import TagsRegistry
from podium.core.verification import RunFacts, SkewBounds, key_problem, stored_start
from podium.errors import TrackingError
from podium.tracking.tables import StoredRun

log = logging.getLogger(__name__)

#: Refused runs remembered (each is warned about once per process, however often it is read again).
MAX_REFUSED = 10_000
#: Identity tags remembered as meeting their rules (one entry per group of runs).
MAX_PASSED = 10_000


class RunRecords:
    """How one tags registry reads runs: which runs it refuses (warned about once each), and the records of the
    others."""

    def __init__(self, tags: TagsRegistry, objective_metric: str = "macro-f1") -> None:
        self.tags = tags
        self.objective_metric = objective_metric
        #: run id -> why it was skipped: runs whose tags break a rule (``podium.core.records.refused_tag``),
        #: left out of every read and warned about once
        self.refused: Bounded[str, RefusedRun] = Bounded(MAX_REFUSED)
        b, g = tags.benchmark, tags.grouping
        #: The rule each identity tag of a benchmark run meets (read for every event the aggregator checks).
        self._benchmark_rules: tuple[tuple[str, Rule], ...] = (
            (g.study_key_hash, "safe"),
            (g.trial_key_hash, "safe"),
            (b.key, "safe"),  # hex when podium wrote it; what filters and Redis keys need, whoever did
            (b.config_hash, "safe"),
            (b.champion_run_id, "safe"),
            (b.data_fp, "text"),
            (b.eval_fp, "text"),
        )
        #: Values of those tags that met every rule (a bounded memo: each entry a few hundred bytes at most).
        self._passed: Bounded[tuple[str | None, ...], bool] = Bounded(MAX_PASSED)

    def grouping(self, run: StoredRun) -> tuple[str, str] | None:
        """The (study, trial) hashes a run is grouped by, or None when it lacks either tag."""
        study = run.tags.get(self.tags.grouping.study_key_hash)
        trial = run.tags.get(self.tags.grouping.trial_key_hash)
        return (study, trial) if study and trial else None

    def _refused(self, run_id: str, checks: Sequence[tuple[str, str | None, Rule]]) -> RefusedRun | None:
        """The rule a run's tags break, warned about once per run; None when they meet every rule."""
        refused = refused_tag(run_id, checks)
        if refused is not None and run_id not in self.refused:
            self.refused.remember(run_id, refused)
            log.warning("%s.", refused)
        return refused

    # ------------------------------------------------------------------ benchmark runs

    def benchmark_refusal(self, run: StoredRun) -> RefusedRun | None:
        """Why a benchmark run's tags cannot be used (filters, Redis keys, messages), or None."""
        tags = run.tags
        values = tuple([tags.get(tag) or None for tag, _ in self._benchmark_rules])
        if values in self._passed:  # a group's runs share these values: they are checked once
            return None
        checks = [(tag, value, rule) for (tag, rule), value in zip(self._benchmark_rules, values, strict=True)]
        refused = self._refused(run.run_id, checks)
        if refused is None:
            self._passed.remember(values, True)
        return refused

    def benchmark_record(self, run: StoredRun) -> BenchmarkRecord | None:
        """The record of a benchmark run; None when it lacks the grouping tags or its tags break a rule."""
        return None if self.benchmark_refusal(run) is not None else self._benchmark_record(run)

    def _benchmark_record(self, run: StoredRun) -> BenchmarkRecord | None:
        grouping = self.grouping(run)
        if grouping is None:
            return None
        study, trial = grouping
        b = self.tags.benchmark
        return BenchmarkRecord(
            run_id=run.run_id,
            start_time=run.start_time,
            study_key_hash=study,
            trial_key_hash=trial,
            benchmark_key=run.tags.get(b.key) or None,
            config_hash=run.tags.get(b.config_hash) or None,
            metrics=dict(run.metrics),
            stability=run.tags.get(b.stability) or "",
            contended=run.tags.get(b.contended) or "",
        )

    def facts(self, run: StoredRun) -> RunFacts:
        """What the live check reads of a run: its status, its record and the parts its key hashes."""
        b, tags = self.tags.benchmark, run.tags
        refused = self.benchmark_refusal(run)
        return RunFacts(
            status=run.status,
            record=None if refused is not None else self._benchmark_record(run),
            champion_run_id=tags.get(b.champion_run_id),
            data_fp=tags.get(b.data_fp),
            eval_fp=tags.get(b.eval_fp),
            key_version=tags.get(b.key_version),
            refused=None if refused is None else str(refused),
        )

    def benchmarks(self, runs: Iterable[StoredRun], now_ms: int, skew: SkewBounds) -> list[BenchmarkRecord]:
        """The records of FINISHED benchmark runs as a rebuild reads them: none that breaks a rule on its tags
        or whose key is not the hash of its parts, none without grouping tags, each placed in time as the live
        aggregator places it (``stored_start``)."""
        out = []
        for run in runs:
            facts = self.facts(run)
            if facts.refused is not None:
                continue
            if facts.record is None:
                log.warning(
                    "Benchmark run %s has no %s/%s tags; it cannot be grouped and is left out.",
                    run.run_id,
                    self.tags.grouping.study_key_hash,
                    self.tags.grouping.trial_key_hash,
                )
                continue
            if (problem := key_problem(facts)) is not None:  # what the live check dead-letters
                log.warning("%s; it is left out.", problem)
                continue
            record, warning = stored_start(facts.record, run.end_time, now_ms, skew)
            if warning is not None:
                log.warning("Benchmark %s.", warning)
            out.append(record)
        return out

    # ------------------------------------------------------------------ trial and refit runs

    def trial_refusal(self, run: StoredRun) -> RefusedRun | None:
        """Why a trial or refit run's tags cannot be used (filters, Redis keys, requests), or None."""
        g, f, tags = self.tags.grouping, self.tags.fingerprint, run.tags
        rules: tuple[tuple[str, Rule], ...] = (
            (g.study_key_hash, "safe"),
            (g.trial_key_hash, "safe"),
            (f.data, "text"),
            (f.eval, "text"),
        )
        return self._refused(run.run_id, [(tag, tags.get(tag) or None, rule) for tag, rule in rules])

    def trial_record(self, run: StoredRun, kind: str) -> TrialRecord | None:
        """The record of a trial or refit run; None when it lacks the grouping tags or its tags break a rule."""
        grouping = self.grouping(run)
        if grouping is None or self.trial_refusal(run) is not None:
            return None
        study, trial = grouping
        tags, model = run.tags, self.tags.model
        return TrialRecord(
            run_id=run.run_id,
            kind="refit" if kind == "refit" else "trial",
            start_time=run.start_time,
            study_key_hash=study,
            trial_key_hash=trial,
            objective=run.metrics.get(self.objective_metric),
            backbone=run.params.get(model.backbone_param) or tags.get(model.backbone_tag),
            data_fp=tags.get(self.tags.fingerprint.data),
            eval_fp=tags.get(self.tags.fingerprint.eval),
        )

    def trial_stages(self) -> tuple[tuple[str, str], ...]:
        """(stage tag value, record kind) of the runs training code writes."""
        return ((self.tags.stage.hpo_trial, "trial"), (self.tags.stage.refit, "refit"))

    def champion(self, run: StoredRun) -> Champion:
        """The champion made of one run (trial or refit) given by id."""
        record = self.trial_record(run, "refit")
        if (refused := self.refused.get(run.run_id)) is not None:
            raise TrackingError(f"run {run.run_id} cannot be benchmarked: its tag {refused.tag} {refused.problem}")
        if record is None:
            raise TrackingError(
                f"run {run.run_id} has no {self.tags.grouping.study_key_hash} / {self.tags.grouping.trial_key_hash} "
                "tags; benchmark it with podium enqueue --run-id (plain MLflow runs are adopted as they are)"
            )
        return Champion(
            run_id=run.run_id,
            study_key_hash=record.study_key_hash,
            trial_key_hash=record.trial_key_hash,
            data_fp=record.data_fp or UNKNOWN_FINGERPRINT,
            eval_fp=record.eval_fp or UNKNOWN_FINGERPRINT,
        )


def champions(records: Iterable[TrialRecord], study: str | None = None) -> list[Champion]:
    """One champion per trial (of ``study``, or of every study): the newest refit run if any, else the newest
    trial run; the fingerprints of the other when the chosen one lacks them."""
    if study is not None:
        require_safe(study, "study_key_hash")
    sides: dict[tuple[str, str], TrialSide] = {}
    for record in records:
        if study is None or record.study_key_hash == study:
            sides.setdefault((record.study_key_hash, record.trial_key_hash), TrialSide()).add(record)
    out = []
    for (study_hash, trial_hash), side in sorted(sides.items()):
        chosen = side.refit or side.trial
        other = side.trial or chosen
        assert chosen is not None and other is not None  # a side exists only once a run was added
        out.append(
            Champion(
                run_id=chosen.run_id,
                study_key_hash=study_hash,
                trial_key_hash=trial_hash,
                data_fp=chosen.data_fp or other.data_fp or UNKNOWN_FINGERPRINT,
                eval_fp=chosen.eval_fp or other.eval_fp or UNKNOWN_FINGERPRINT,
            )
        )
    return out


def fact_tags(tags: TagsRegistry) -> tuple[str, ...]:
    """The tags the check of a run reads (``RunFacts``): its grouping, its key and the parts the key hashes; and
    the flags that put its figure in doubt (selection reads them)."""
    b, g = tags.benchmark, tags.grouping
    return (
        g.study_key_hash,
        g.trial_key_hash,
        b.key,
        b.config_hash,
        b.champion_run_id,
        b.data_fp,
        b.eval_fp,
        b.key_version,
        b.stability,
        b.contended,
    )
