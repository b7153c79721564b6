"""Selection state as a fold over results: the one implementation behind both the batch
``podium select`` and the streaming aggregator.

``SelectionState.apply_benchmark`` / ``apply_trial`` take one record and say which scope changed;
``select(scope)`` ranks that scope. The batch path folds every record of a store into a fresh state
(:func:`select_all`); the aggregator folds events as they arrive. Same records, same answer.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from podium.core.aggregation import GroupKey, Sample, ScopeKey, Window, aggregate, group_key, scope_key
from podium.core.config import SelectionConfig
from podium.core.metric_names import stability_metric
from podium.core.records import BenchmarkRecord, TrialRecord
from podium.core.selection import Candidate, Selection, rank
from podium.core.verification import metrics_problem

log = logging.getLogger(__name__)

TrialKey = tuple[str, str]  # (study_key_hash, trial_key_hash)


@dataclass
class TrialSide:
    """The newest trial run and the newest refit run of one trial."""

    trial: TrialRecord | None = None
    refit: TrialRecord | None = None

    def add(self, record: TrialRecord) -> bool:
        current = self.trial if record.kind == "trial" else self.refit
        if current is not None and (current.start_time, current.run_id) >= (record.start_time, record.run_id):
            return False  # the newest run of each kind counts
        if record.kind == "trial":
            self.trial = record
        else:
            self.refit = record
        return True


@dataclass
class SkipCounts:
    missing_metric: int = 0
    #: A folded metric that no measurement gives (negative, NaN, infinite): written by hand or forged.
    bad_metric: int = 0


@dataclass
class SelectionState:
    config: SelectionConfig
    windows: dict[GroupKey, Window] = field(default_factory=dict)
    group_scope: dict[GroupKey, ScopeKey] = field(default_factory=dict)
    scope_groups: dict[ScopeKey, set[GroupKey]] = field(default_factory=lambda: defaultdict(set))
    trials: dict[TrialKey, TrialSide] = field(default_factory=lambda: defaultdict(TrialSide))
    skipped: SkipCounts = field(default_factory=SkipCounts)
    #: Each group's candidate as last derived (None: it cannot be one), until its window or trial changes:
    #: selecting a scope after one event then derives one candidate, not all of them.
    _candidates: dict[GroupKey, Candidate | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        bench = self.config.benchmark
        #: Read once, not per result: the metrics a run needs, its stability flag's name, and all it folds.
        self._needed = tuple(sorted({bench.latency_metric, *bench.required_metrics}))
        self._stability_flag = stability_metric(bench.latency_metric)
        self._folded = folded_metrics(self.config)

    # ------------------------------------------------------------------ folding

    def apply_benchmark(self, record: BenchmarkRecord) -> ScopeKey | None:
        """Fold one benchmark result in; return its scope when the result changed anything."""
        bench = self.config.benchmark
        metrics = record.metrics
        missing = [m for m in self._needed if metrics.get(m) is None]
        if missing:
            self.skipped.missing_metric += 1
            log.warning(
                "Benchmark run %s lacks required metric(s) %s; it is left out of selection.", record.run_id, missing
            )
            return None
        problem = metrics_problem(
            {m: metrics[m] for m in self._folded if m in metrics}, f"benchmark run {record.run_id}"
        )
        if problem is not None:  # the live check dead-letters such a run: every path leaves it out
            self.skipped.bad_metric += 1
            log.warning("%s; it is left out of selection.", problem)
            return None
        gkey, skey = group_key(record), scope_key(record)
        window = self.windows.get(gkey) or Window(bench.window)
        latency = float(metrics[bench.latency_metric])
        # a run is in doubt only when it says so (runs without the flag, legacy ones, are taken as stable)
        stable = self._stability_flag is None or metrics.get(self._stability_flag) != 0.0
        updated = window.add(Sample(record.start_time, record.run_id, latency, stable))
        if updated is window and gkey in self.windows:
            return None
        self.windows[gkey] = updated
        self.group_scope[gkey] = skey
        self.scope_groups[skey].add(gkey)
        self._candidates.pop(gkey, None)
        return skey

    def apply_trial(self, record: TrialRecord) -> list[ScopeKey]:
        """Fold one trial/refit run in; return the scopes whose candidates it may change."""
        tkey = (record.study_key_hash, record.trial_key_hash)
        if not self.trials[tkey].add(record):
            return []
        groups = [g for g in self.group_scope if (g.study_key_hash, g.trial_key_hash) == tkey]
        for g in groups:
            self._candidates.pop(g, None)
        return sorted({self.group_scope[g] for g in groups}, key=_scope_order)

    # ------------------------------------------------------------------ reading

    def candidates(self, scope: ScopeKey) -> list[Candidate]:
        out = []
        for gkey in sorted(self.scope_groups.get(scope, ())):
            if gkey in self._candidates:
                candidate = self._candidates[gkey]
            else:
                candidate = self._candidates[gkey] = self._candidate(gkey)
            if candidate is not None:
                out.append(candidate)
        return out

    def _candidate(self, gkey: GroupKey) -> Candidate | None:
        """The group as a candidate: its window's aggregate with its trial's objective (None: no trial run, or
        no objective)."""
        side = self.trials.get((gkey.study_key_hash, gkey.trial_key_hash))
        trial = side.trial if side else None
        if side is None or trial is None:
            return None
        objective = trial.objective if trial.objective is not None else _objective(side.refit)
        if objective is None:
            return None
        agg = aggregate(self.windows[gkey], self.config.benchmark.latency_aggregation)
        artifact = side.refit or trial
        return Candidate(
            trial_key_hash=gkey.trial_key_hash,
            benchmark_key=gkey.benchmark_key,
            f1_score=objective,
            latency_ms=agg.latency_ms,
            benchmark_runs_count=agg.count,
            benchmark_run_id=agg.representative.run_id,
            trial_run_id=trial.run_id,
            artifact_run_id=artifact.run_id,
            backbone=trial.backbone or (side.refit.backbone if side.refit else None),
            unstable=not agg.representative.stable,
        )

    def select(self, scope: ScopeKey) -> Selection | None:
        ranked = rank(self.candidates(scope), self.config)
        if not ranked:
            return None
        return Selection(scope.study_key_hash, scope.config_hash, ranked[0], tuple(ranked))

    def unjoined_groups(self) -> int:
        """Benchmark groups that cannot become candidates: no trial run, or no objective metric."""
        return sum(len(groups) - len(self.candidates(scope)) for scope, groups in self.scope_groups.items())

    def scopes(self) -> list[ScopeKey]:
        return sorted(self.scope_groups, key=_scope_order)


def folded_metrics(config: SelectionConfig) -> tuple[str, ...]:
    """Every metric the fold reads of a benchmark run: the latency metric, the required ones and the latency's
    stability flag. A reader may fetch only these."""
    bench = config.benchmark
    flag = stability_metric(bench.latency_metric)
    return tuple(sorted({bench.latency_metric, *bench.required_metrics, *([flag] if flag else [])}))


def _objective(record: TrialRecord | None) -> float | None:
    return record.objective if record is not None else None


def _scope_order(scope: ScopeKey) -> tuple[str, str]:
    return (scope.study_key_hash, scope.config_hash or "")


def select_all(
    benchmarks: Iterable[BenchmarkRecord], trials: Iterable[TrialRecord], config: SelectionConfig
) -> tuple[list[Selection], SelectionState]:
    """The batch path: fold every record into a fresh state and select every scope."""
    state = SelectionState(config)
    for trial in trials:
        state.apply_trial(trial)
    for bench in benchmarks:
        state.apply_benchmark(bench)
    selections = [s for s in (state.select(scope) for scope in state.scopes()) if s is not None]
    return selections, state
