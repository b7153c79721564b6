"""Should the aggregator believe a result event? (pure; the aggregator reads MLflow and the stream).

An event is only a notification: it is applied when MLflow holds a FINISHED benchmark run with the event's
id whose tags say the same key, study, trial and config, and whose key recomputes from its parts. What is
folded in is MLflow's record of that run (its metrics and start time), so a forged or stale event can
change nothing that ``podium select`` would not also see. The rules on the run itself (its key against its
parts, its folded metrics finite and non-negative) are the batch path's too (``key_problem`` when runs are
loaded, ``metrics_problem`` in the fold): a restart never changes what is believed.

Clocks: a start time far from the stream entry's own time (Redis's clock when the worker committed) is
not believed; the entry's time is used instead, with a warning. A run read from MLflow with no entry (a
rebuild, ``podium select``, a report) goes through the same function (``stored_start``): a start after the
reader's clock is placed at the run's commit, its end time when that can be believed, so a future-dated run
pins ``latest`` on no path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from podium.core.identity import build_benchmark_key
from podium.core.records import BenchmarkRecord
from podium.errors import UnsafeValueError

FINISHED = "FINISHED"


@dataclass(frozen=True)
class RunFacts:
    """What MLflow says about one run: its status, the record built from it (None: no grouping tags), and
    its identity tags (tag name -> value, as written by the worker)."""

    status: str
    record: BenchmarkRecord | None
    champion_run_id: str | None
    data_fp: str | None
    eval_fp: str | None
    key_version: str | None
    #: Why its tags cannot be used (``podium.core.records.refused_tag``); then ``record`` is None.
    refused: str | None = None


class EventClaim(Protocol):
    """What a result event says about its run (a ``BenchmarkResult`` says it: checked as it is, not copied)."""

    @property
    def run_id(self) -> str: ...
    @property
    def benchmark_key(self) -> str: ...
    @property
    def study_key_hash(self) -> str: ...
    @property
    def trial_key_hash(self) -> str: ...
    @property
    def config_hash(self) -> str: ...


def run_problem(run_id: str, facts: RunFacts | None) -> str | None:
    """Why MLflow's run cannot back any event (missing, not FINISHED, not a consistent podium benchmark run)."""
    if facts is None:
        return f"no run {run_id} in MLflow: the event names a run that was never logged (forged or from another store)"
    if facts.status != FINISHED:
        return f"run {run_id} is {facts.status} in MLflow, not FINISHED: its commit did not complete"
    if facts.refused is not None:
        return facts.refused
    record = facts.record
    if record is None:
        return f"run {run_id} in MLflow has no study/trial grouping tags: it is not a podium benchmark run"
    if record.benchmark_key is None:
        return f"run {run_id} in MLflow has no benchmark_key: a legacy run, which no result event names"
    return key_problem(facts) or metrics_problem(record.metrics, run_id)


def key_problem(facts: RunFacts) -> str | None:
    """Why a run's ``benchmark_key`` is not the hash of its parts, or None. The same rule on every path: the live
    check of an event, a rebuild and ``podium select``. A legacy run (no key) and a run written without its parts'
    tags (older code) have nothing to check; an event is still believed only when MLflow's key is the event's."""
    record = facts.record
    if record is None or record.benchmark_key is None:
        return None
    parts = (facts.champion_run_id, facts.data_fp, facts.eval_fp, record.config_hash, facts.key_version)
    if any(part is None for part in parts):
        return None
    recomputed = recompute_key(facts)
    if recomputed == record.benchmark_key:
        return None
    return (
        f"run {record.run_id}: its benchmark_key {record.benchmark_key[:16]}… in MLflow does not match its parts "
        f"(recomputed {str(recomputed)[:16]}…)"
    )


def claim_problem(claim: EventClaim, record: BenchmarkRecord) -> str | None:
    """Why an event disagrees with MLflow's record of its run, or None."""
    if (record.benchmark_key, record.study_key_hash, record.trial_key_hash, record.config_hash) == (
        claim.benchmark_key,
        claim.study_key_hash,
        claim.trial_key_hash,
        claim.config_hash,
    ):
        return None  # the hot path: one tuple comparison
    stated = {
        "benchmark_key": (record.benchmark_key, claim.benchmark_key),
        "study_key_hash": (record.study_key_hash, claim.study_key_hash),
        "trial_key_hash": (record.trial_key_hash, claim.trial_key_hash),
        "config_hash": (record.config_hash, claim.config_hash),
    }
    for name, (in_mlflow, in_event) in stated.items():
        if in_mlflow != in_event:
            return f"run {claim.run_id}: the event's {name} {in_event!r} differs from MLflow's {in_mlflow!r}"
    return None


def recompute_key(facts: RunFacts) -> str | None:
    record = facts.record
    champion, data_fp, eval_fp = facts.champion_run_id, facts.data_fp, facts.eval_fp
    config_hash = record.config_hash if record else None
    if champion is None or data_fp is None or eval_fp is None or config_hash is None:
        return None
    if not (facts.key_version or "").isdigit():
        return None
    try:
        return build_benchmark_key(champion, data_fp, eval_fp, config_hash, int(facts.key_version or 0))
    except UnsafeValueError:
        return None


def metrics_problem(
    metrics: Mapping[str, float], run_id: str, kind: str = "run", names: Iterable[str] | None = None
) -> str | None:
    """Latencies and throughputs are finite and non-negative; anything else is a broken or forged figure. Only
    ``names`` are checked when given (those the run has)."""
    for name in metrics if names is None else names:
        value = metrics.get(name)
        if value is not None and (not math.isfinite(value) or value < 0):
            return f"{kind} {run_id}: metric {name} = {value!r} is not a finite non-negative number"
    return None


@dataclass(frozen=True)
class SkewBounds:
    """How far a run's start time may lie from the stream entry's time (Redis's clock at commit): at most
    ``max_skew_ms`` after it, and at most the longest benchmark plus the skew before it."""

    max_skew_ms: int
    max_benchmark_ms: int


#: Default bounds (``PODIUM_MAX_CLOCK_SKEW_S``, ``PODIUM_MAX_BENCHMARK_S``): 5 minutes of skew, benchmarks up to
#: an hour.
DEFAULT_SKEW = SkewBounds(max_skew_ms=300_000, max_benchmark_ms=3_600_000)
#: The old names, until tracking/tracker.py and board/selections.py import the new ones (then remove these).
Clock = SkewBounds
DEFAULT_CLOCK = DEFAULT_SKEW


def trusted_start(
    record: BenchmarkRecord, entry_ms: int, skew: SkewBounds, commit: str = "its commit on Redis's clock"
) -> tuple[BenchmarkRecord, str | None]:
    """The record with a start time that can be believed, and a warning when it had to be replaced."""
    earliest = entry_ms - skew.max_benchmark_ms - skew.max_skew_ms
    latest = entry_ms + skew.max_skew_ms
    if earliest <= record.start_time <= latest:
        return record, None
    offset_s = (record.start_time - entry_ms) / 1000
    warning = (
        f"run {record.run_id} starts {offset_s:+.0f} s from {commit} (allowed "
        f"{-(skew.max_benchmark_ms + skew.max_skew_ms) / 1000:.0f}..+{skew.max_skew_ms / 1000:.0f} s): "
        "the writer's clock is skewed; the commit time is used instead"
    )
    return replace(record, start_time=entry_ms), warning


def stored_start(
    record: BenchmarkRecord, end_ms: int | None, now_ms: int, skew: SkewBounds
) -> tuple[BenchmarkRecord, str | None]:
    """``trusted_start`` for a run read from MLflow without its stream entry (a rebuild, ``podium select``, a
    report). Without the entry only a start after the reader's clock ``now_ms`` (plus the skew) can be judged;
    such a run is placed where the live check places it, at its commit: its end time (``end_ms``) when that
    is not in the future too, else ``now_ms``. A start in the past is believed (a long queue looks the same)."""
    if record.start_time <= now_ms + skew.max_skew_ms:
        return record, None
    if end_ms is not None and 0 < end_ms <= now_ms + skew.max_skew_ms:
        return trusted_start(record, min(end_ms, now_ms), skew, "its end time")
    return trusted_start(record, now_ms, skew, "the reader's clock (its end time is in the future too)")
