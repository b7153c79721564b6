"""Selection state as a fold over results: the one implementation behind both the batch
``podium select`` and the streaming aggregator.

``SelectionState.apply_benchmark`` / ``apply_trial`` take one record and say which scope changed;
``select(scope)`` ranks that scope. The batch path folds every record of a store into a fresh state
(:func:`select_all`); the aggregator folds events as they arrive. Same records, same answer.

The published best of a scope (its *incumbent*) is a function of the ordered evidence: the scope's runs are
replayed in ``(start_time, run_id)`` order, and after each one the top-ranked candidate replaces the incumbent
only when it beats it beyond the noise (:mod:`podium.core.promotion`), or when the incumbent no longer competes.
A stream that receives runs in that order extends the replay by one step per run; a run older than one already
replayed, or a changed trial, replays the scope from its first run. So ``podium select`` on a store and an
aggregator that saw the same runs in any order name the same best.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from podium.core.aggregation import (
    GroupKey,
    Sample,
    ScopeKey,
    Window,
    aggregate,
    aggregate_value,
    group_key,
    scope_key,
)
from podium.core.config import SelectionConfig
from podium.core.doubt import doubt_metrics, doubt_of
from podium.core.figure import figure_label, ranked_batch_size, ranking_metric, tail_metric
from podium.core.promotion import ratio_upper_bound
from podium.core.records import BenchmarkRecord, TrialRecord
from podium.core.selection import (
    Candidate,
    RankKey,
    Selection,
    exclusion,
    higher_is_better,
    prefers,
    rank_eligible,
    rank_key,
    sort_key,
    split,
    top_of,
)
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


class _Derived(NamedTuple):
    """A group's candidate as last derived (None: it cannot be one), the same when it may compete, and then its
    rank key (the policies ranked by a per-candidate key)."""

    candidate: Candidate | None
    competing: Candidate | None
    key: RankKey | None


@dataclass
class ScopeHistory:
    """Every run of one scope in evidence order ``(start_time, run_id)``, and the replay of the published best
    through the first ``done`` of them."""

    order: list[tuple[int, str]] = field(default_factory=list)
    entries: list[tuple[GroupKey, Sample]] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)
    done: int = 0
    #: The replay must start again from the first run (a changed trial changes every step's candidates).
    stale: bool = False
    #: The replay must start again from this run (one older than a run already replayed arrived).
    redo_from: int | None = None
    incumbent: GroupKey | None = None
    #: The top-ranked competing group after ``done`` runs (kept for the policies ranked by a per-candidate key).
    top: GroupKey | None = None
    #: After each replayed run: (incumbent, top), so a late run replays from where it belongs, not from the start.
    steps: list[tuple[GroupKey | None, GroupKey | None]] = field(default_factory=list)
    #: (top, incumbent) when the last noise test between them kept the incumbent: while neither's runs change,
    #: the test gives the same answer (the policies ranked by a per-candidate key; cleared by every replay).
    held_off: tuple[GroupKey, GroupKey] | None = None

    def insert(self, gkey: GroupKey, sample: Sample) -> bool:
        """Add a run; False for one already here (a replayed event)."""
        if sample.run_id in self.run_ids:
            return False
        key, order = (sample.start_time, sample.run_id), self.order
        i = len(order) if not order or key > order[-1] else bisect.bisect(order, key)  # the newest: most often
        self.order.insert(i, key)
        self.entries.insert(i, (gkey, sample))
        self.run_ids.add(sample.run_id)
        if i < self.done:
            self.redo_from = i if self.redo_from is None else min(self.redo_from, i)
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
    histories: dict[ScopeKey, ScopeHistory] = field(default_factory=dict)
    #: Each group's candidate as last derived, until its window or trial changes: selecting a scope after one
    #: event then derives one candidate, not all of them.
    _candidates: dict[GroupKey, _Derived] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        bench = self.config.benchmark
        #: Read once, not per result: the metrics a run needs, the figures it gives, and all it folds.
        self._metric = ranking_metric(bench)
        self._tail = tail_metric(bench)
        self._batch = ranked_batch_size(bench)
        #: ``throughput_at_sla``: a run without the figure (no load benchmark) is kept, to be shown with why it
        #: does not compete; other figures are required.
        self._higher = higher_is_better(self.config)
        self._needed = tuple(sorted({*([] if self._higher else [self._metric]), *bench.required_metrics}))
        self._folded = folded_metrics(self.config)
        self._keyed = self.config.selection.policy != "tolerance"
        self._labels: dict[int, str] = {}

    # ------------------------------------------------------------------ folding

    def apply_benchmark(self, record: BenchmarkRecord) -> ScopeKey | None:
        """Fold one benchmark result in; return its scope when the result changed anything."""
        metrics = record.metrics
        missing = [m for m in self._needed if metrics.get(m) is None]
        if missing:
            self.skipped.missing_metric += 1
            log.warning(
                "Benchmark run %s lacks required metric(s) %s; it is left out of selection (a store written without "
                "percentiles can be ranked with benchmark.statistic: mean).",
                record.run_id,
                missing,
            )
            return None
        problem = metrics_problem(metrics, record.run_id, "benchmark run", self._folded)
        if problem is not None:  # the live check dead-letters such a run: every path leaves it out
            self.skipped.bad_metric += 1
            log.warning("%s; it is left out of selection.", problem)
            return None
        gkey, skey = group_key(record), scope_key(record)
        tail, figure = metrics.get(self._tail), metrics.get(self._metric)
        sample = Sample(
            record.start_time,
            record.run_id,
            0.0 if figure is None else float(figure),
            doubt_of(metrics, record.stability, record.contended, self._batch),
            None if tail is None else float(tail),
            figure is not None,
        )
        history = self.histories.get(skey)
        if history is None:  # not setdefault: that builds a history for every result, to throw it away
            history = self.histories[skey] = ScopeHistory()
        if not history.insert(gkey, sample):
            return None
        self.group_scope[gkey] = skey
        self.scope_groups[skey].add(gkey)
        return skey

    def apply_trial(self, record: TrialRecord) -> list[ScopeKey]:
        """Fold one trial/refit run in; return the scopes whose candidates it may change (replayed afresh)."""
        tkey = (record.study_key_hash, record.trial_key_hash)
        if not self.trials[tkey].add(record):
            return []
        groups = [g for g in self.group_scope if (g.study_key_hash, g.trial_key_hash) == tkey]
        scopes = sorted({self.group_scope[g] for g in groups}, key=_scope_order)
        for scope in scopes:
            self.histories[scope].stale = True
        return scopes

    # ------------------------------------------------------------------ the replay

    def _sync(self, scope: ScopeKey) -> ScopeHistory | None:
        """Replay the scope's runs not yet replayed (all of them when the history is stale)."""
        history = self.histories.get(scope)
        if history is None:
            return None
        size = self.config.benchmark.window
        if history.stale or history.redo_from is not None:
            start = 0 if history.stale else history.redo_from or 0
            for g in self.scope_groups.get(scope, ()):
                self.windows.pop(g, None)
                self._candidates.pop(g, None)
            for gkey, sample in history.entries[:start]:  # the windows as they were before run ``start``
                self.windows[gkey] = (self.windows.get(gkey) or Window(size)).add(sample)
            del history.steps[start:]
            history.incumbent, history.top = history.steps[-1] if history.steps else (None, None)
            history.done, history.stale, history.redo_from, history.held_off = start, False, None, None
        while history.done < len(history.entries):
            gkey, sample = history.entries[history.done]
            self.windows[gkey] = (self.windows.get(gkey) or Window(size)).add(sample)
            self._candidates.pop(gkey, None)
            history.done += 1
            self._step(scope, history, gkey)
            history.steps.append((history.incumbent, history.top))
        return history

    def _step(self, scope: ScopeKey, history: ScopeHistory, changed: GroupKey) -> None:
        """After one run of ``changed``: the new top, and whether it replaces the incumbent."""
        top = history.top = self._top(scope, history, changed)
        incumbent = history.incumbent
        if top is None or incumbent is None or top == incumbent:
            history.incumbent, history.held_off = top, None
            return
        if history.held_off == (top, incumbent) and changed not in (top, incumbent):
            return  # another group's run: the two candidates, and so the noise test between them, are as they were
        held = self._competing(incumbent)
        if held is None:  # the incumbent no longer competes (in doubt, over the limit, its trial gone)
            history.incumbent, history.held_off = top, None
            return
        challenger = self._competing(top)
        if challenger is not None and self._beats(challenger, held, scope):
            history.incumbent, history.held_off = top, None
        elif self._keyed:  # tolerance ranks among every candidate: its test is asked again after each run
            history.held_off = (top, incumbent)

    def _top(self, scope: ScopeKey, history: ScopeHistory, changed: GroupKey) -> GroupKey | None:
        current = history.top
        if self._keyed and current is not None and current != changed:
            # only ``changed``'s candidate moved, and the order is a key of each candidate alone
            held = self._derived(current)
            if held.key is not None:
                # most runs leave their group behind the top: its key says so without deriving its candidate (and
                # an excluded one, which has no key, stays behind too)
                provisional = self._provisional_key(changed)
                if provisional is None or provisional >= held.key:
                    return current
                # it passes the top if it competes (its key, when it has one, is the provisional key)
                return changed if self._derived(changed).key is not None else current
        groups = self.scope_groups.get(scope, ())
        if self._keyed:  # the first, by key, that competes: most often the first one derived
            for _, g in sorted((k, g) for g in groups if (k := self._provisional_key(g)) is not None):
                if self._derived(g).key is not None:
                    return g
            return None
        # order does not matter here: the policies' keys end in the tie-breaks
        competing = [c for g in groups if (c := self._competing(g)) is not None]
        top = top_of(competing, self.config)
        return _gkey(top, scope) if top is not None else None

    def _ranked(self, scope: ScopeKey) -> list[Candidate]:
        competing = [c for c in self._all_candidates(scope) if exclusion(c, self.config) is None]
        return rank_eligible(competing, self.config)

    def _beats(self, challenger: Candidate, incumbent: Candidate, scope: ScopeKey) -> bool:
        """The challenger still ranks first with its latency at the pessimistic end of the noise: the
        incumbent's figure times the upper confidence bound on their ratio, less ``min_improvement``. Without an
        estimate of the noise (one run each) it is credited with no speed advantage at all."""
        sel = self.config.selection
        held, new = self._figures(_gkey(incumbent, scope)), self._figures(_gkey(challenger, scope))
        if self._higher:  # a throughput: the same test on the time per inference, its inverse
            if min(held + new, default=0.0) <= 0:
                held, new = [], []
            held, new = [1.0 / v for v in held], [1.0 / v for v in new]
        bound = ratio_upper_bound(held, new, sel.confidence)
        if self._higher:
            credited = incumbent.latency_ms / (1.0 if math.isinf(bound) else bound)
            figure = min(challenger.latency_ms, credited) * (1.0 - sel.min_improvement)
        else:
            credited = incumbent.latency_ms * (1.0 if math.isinf(bound) else bound)
            figure = max(challenger.latency_ms, credited) / (1.0 - sel.min_improvement)
        pessimistic = replace(challenger, latency_ms=figure)
        competing = self._ranked(scope) if not self._keyed else ()
        return prefers(pessimistic, incumbent, competing, self.config)

    def _figures(self, gkey: GroupKey) -> list[float]:
        return [s.latency_ms for s in self._used(self.windows[gkey])]

    def _used(self, window: Window) -> Sequence[Sample]:
        """The runs a group's figure stands on: its clean ones, unless it has none or doubt is let in."""
        samples = window.samples
        if self._higher:  # runs with the figure stand for the group when it has any
            samples = tuple(s for s in samples if s.has_figure) or samples
        if self.config.selection.include_unstable:
            return samples
        clean = [s for s in samples if not s.doubt]
        return clean or samples

    # ------------------------------------------------------------------ reading

    def candidates(self, scope: ScopeKey) -> list[Candidate]:
        self._sync(scope)
        return self._all_candidates(scope)

    def _all_candidates(self, scope: ScopeKey) -> list[Candidate]:
        return [c for g in sorted(self.scope_groups.get(scope, ())) if (c := self._candidate_of(g)) is not None]

    def _derived(self, gkey: GroupKey) -> _Derived:
        derived = self._candidates.get(gkey)
        if derived is None:
            candidate = self._candidate(gkey)
            if candidate is None or exclusion(candidate, self.config) is not None:
                derived = _Derived(candidate, None, None)
            else:
                derived = _Derived(candidate, candidate, sort_key(candidate, self.config) if self._keyed else None)
            self._candidates[gkey] = derived
        return derived

    def _candidate_of(self, gkey: GroupKey) -> Candidate | None:
        return self._derived(gkey).candidate

    def _competing(self, gkey: GroupKey) -> Candidate | None:
        return self._derived(gkey).competing

    def _label(self, runs: int) -> str:
        if runs not in self._labels:
            self._labels[runs] = figure_label(self.config.benchmark, runs)
        return self._labels[runs]

    def _basis(self, gkey: GroupKey) -> tuple[TrialSide, TrialRecord, float, Sequence[Sample]] | None:
        """What the group's candidate stands on: its trial's runs, its trial run, the objective and the runs its
        figure is aggregated over (None: no trial run, no objective or one that is not a finite number, or no run
        replayed yet)."""
        side = self.trials.get((gkey.study_key_hash, gkey.trial_key_hash))
        trial = side.trial if side else None
        window = self.windows.get(gkey)
        if side is None or trial is None or window is None or not window.samples:
            return None
        objective = trial.objective if trial.objective is not None else _objective(side.refit)
        if objective is None or not math.isfinite(objective):  # a diverged trial's NaN ranks nowhere
            return None
        return side, trial, objective, self._used(window)

    def _provisional_key(self, gkey: GroupKey) -> RankKey | None:
        """The rank key the group's candidate has if it competes (None: it has none), without deriving it."""
        basis = self._basis(gkey)
        if basis is None:
            return None
        _, _, objective, used = basis
        figure = aggregate_value(used, self.config.benchmark.across_runs)
        return rank_key(objective, figure, gkey.trial_key_hash, gkey.benchmark_key, self.config)

    def _candidate(self, gkey: GroupKey) -> Candidate | None:
        """The group as a candidate: its window's aggregate with its trial's objective (None: see ``_basis``)."""
        basis = self._basis(gkey)
        if basis is None:
            return None
        side, trial, objective, used = basis
        agg = aggregate(used, self.config.benchmark.across_runs)
        # clean runs stand for the group when it has any; else (or with doubt let in) its representative's doubt
        in_doubt = self.config.selection.include_unstable or all(s.doubt for s in used)
        doubt = agg.representative.doubt if in_doubt else ""
        artifact = side.refit or trial
        return Candidate(
            trial_key_hash=gkey.trial_key_hash,
            benchmark_key=gkey.benchmark_key,
            objective=objective,
            latency_ms=agg.latency_ms,
            benchmark_runs_count=agg.count,
            benchmark_run_id=agg.representative.run_id,
            trial_run_id=trial.run_id,
            artifact_run_id=artifact.run_id,
            backbone=trial.backbone or (side.refit.backbone if side.refit else None),
            unstable=bool(doubt),
            doubt=doubt or None,
            p99_ms=agg.p99_ms,
            latency_figure=self._label(agg.count),
            throughput_at_sla_per_s=agg.latency_ms if self._higher and used[0].has_figure else None,
        )

    def select(self, scope: ScopeKey) -> Selection | None:
        history = self._sync(scope)
        ranked, excluded = split(self._all_candidates(scope), self.config)
        if not ranked or history is None:
            return None
        by_key = {_gkey(c, scope): c for c in ranked}
        best = by_key.get(history.incumbent) if history.incumbent is not None else None
        if best is None:  # cannot happen after a replay; the ranking's top is the safe answer
            best = ranked[0]
        challenger = ranked[0] if ranked[0] is not best else None
        return Selection(scope.study_key_hash, scope.config_hash, best, tuple(ranked), tuple(excluded), challenger)

    def unselected(self, scope: ScopeKey) -> list[Candidate]:
        """A scope with candidates but none competing (all in doubt or over the limit): they, with their reasons,
        to be shown although there is no best (empty when the scope has a best, or no candidate)."""
        ranked, excluded = split(self.candidates(scope), self.config)
        return [] if ranked else excluded

    def unjoined_groups(self) -> int:
        """Benchmark groups that cannot become candidates: no trial run, or no objective metric."""
        return sum(len(groups) - len(self.candidates(scope)) for scope, groups in self.scope_groups.items())

    def scopes(self) -> list[ScopeKey]:
        return sorted(self.scope_groups, key=_scope_order)


def _gkey(c: Candidate, scope: ScopeKey) -> GroupKey:
    return GroupKey(scope.study_key_hash, c.trial_key_hash, c.benchmark_key)


def folded_metrics(config: SelectionConfig) -> tuple[str, ...]:
    """Every metric the fold reads of a benchmark run: the ranked figure, the required ones, the p99 the
    ``constraint`` policy limits and the flags that put a figure in doubt. A reader may fetch only these."""
    bench = config.benchmark
    names = {
        ranking_metric(bench),
        tail_metric(bench),
        *bench.required_metrics,
        *doubt_metrics(ranked_batch_size(bench)),
    }
    return tuple(sorted(names))


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
