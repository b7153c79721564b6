"""Grouping and rolling-window aggregation of benchmark results.

A group is ``(study_key_hash, trial_key_hash, benchmark_key)``; runs written without a key group as
``legacy_{trial_key_hash}``. A group's window holds the newest ``window`` samples ordered by
``(start_time, run_id)``, so it is a function of the *set* of samples seen: replaying a result, or
seeing results in another order, gives the same window. Aggregates never pick the best sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

from podium.core.choices import Aggregation
from podium.core.records import BenchmarkRecord

LEGACY_PREFIX = "legacy_"


class GroupKey(NamedTuple):
    study_key_hash: str
    trial_key_hash: str
    benchmark_key: str


class ScopeKey(NamedTuple):
    """Candidates compete only within one scope. ``config_hash`` is None for legacy runs."""

    study_key_hash: str
    config_hash: str | None


def group_key(record: BenchmarkRecord) -> GroupKey:
    key = record.benchmark_key or f"{LEGACY_PREFIX}{record.trial_key_hash}"
    return GroupKey(record.study_key_hash, record.trial_key_hash, key)


def scope_key(record: BenchmarkRecord) -> ScopeKey:
    """Legacy runs (no ``benchmark_key``) share one scope per study whatever config tag they carry."""
    return ScopeKey(record.study_key_hash, record.config_hash if record.benchmark_key else None)


@dataclass(frozen=True, order=True)
class Sample:
    start_time: int
    run_id: str
    latency_ms: float
    #: Why the run's figure is in doubt (``unstable``, ``contended ...``); ``""`` for a clean run.
    doubt: str = ""
    #: The run's p99 at the ranked batch size, when it has one (the ``constraint`` policy's limit reads it).
    p99_ms: float | None = None
    #: False for a run without the ranked figure, kept only to be shown (``throughput_at_sla``: no load benchmark).
    has_figure: bool = True

    @property
    def stable(self) -> bool:
        return not self.doubt


@dataclass(frozen=True)
class Window:
    """The newest ``size`` samples of a group, oldest first."""

    size: int
    samples: tuple[Sample, ...] = ()

    def add(self, sample: Sample) -> Window:
        """A window with ``sample`` in it; ``self`` when it changes nothing (a replay, or too old)."""
        samples, run_id = self.samples, sample.run_id
        for s in samples:  # a loop, not any(): this runs once per event
            if s.run_id == run_id:
                return self
        key = (sample.start_time, sample.run_id)
        if not samples or key > (samples[-1].start_time, samples[-1].run_id):  # the common case: newest
            return Window(self.size, (*samples, sample)[-self.size :])
        if len(samples) >= self.size and key < (samples[0].start_time, samples[0].run_id):
            return self  # older than everything kept
        merged = sorted((*samples, sample), key=lambda s: (s.start_time, s.run_id))[-self.size :]
        return Window(self.size, tuple(merged))


@dataclass(frozen=True)
class Aggregate:
    latency_ms: float
    representative: Sample  # the run whose figures stand for the group
    count: int
    #: The runs' p99s aggregated the same way (None when any of them lacks one).
    p99_ms: float | None = None


def aggregate(window: Window | Sequence[Sample], method: Aggregation) -> Aggregate:
    """Latency of a group by ``latest`` (newest start), ``median`` or ``mean`` over its window (or some of its
    samples, oldest first)."""
    samples = window.samples if isinstance(window, Window) else tuple(window)
    if not samples:
        raise ValueError("cannot aggregate an empty window")
    if method == "latest":
        newest = samples[-1]
        return Aggregate(newest.latency_ms, newest, len(samples), newest.p99_ms)
    value = aggregate_value(samples, method)
    # The run closest to the aggregate stands for it; on a tie, the newest (a loop: this runs once per event).
    representative, distance = samples[-1], math.inf
    for s in reversed(samples):
        if (d := abs(s.latency_ms - value)) < distance:
            representative, distance = s, d
    tails = [s.p99_ms for s in samples]
    p99 = None if None in tails else _combine(cast("list[float]", tails), method)
    return Aggregate(value, representative, len(samples), p99)


def aggregate_value(samples: Sequence[Sample], method: Aggregation) -> float:
    """The ``latency_ms`` of :func:`aggregate` alone (non-empty ``samples``, oldest first)."""
    if method == "latest":
        return samples[-1].latency_ms
    return _combine([s.latency_ms for s in samples], method)


def _combine(values: list[float], method: Aggregation) -> float:
    return statistics.median(values) if method == "median" else statistics.fmean(values)
