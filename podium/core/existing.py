"""Is a benchmark already done? The rule, free of I/O, shared by the single check and the bulk filter.

PRIMARY: a FINISHED run tagged with the same ``benchmark_key``. FALLBACK, only for runs written
without that tag: same ``study_key_hash`` and ``trial_key_hash`` (and, when the legacy run carries a
config hash tag, the same config hash). A fallback match is always reported so it can be warned about.

Done means a result: a matching run counts only when it holds the result metrics (the mean latency of every
batch size the request asks for, not NaN). A FINISHED run with the key and no result (written by hand, or
by a tool that failed half-way) is no answer: the benchmark is measured again, and the run is named.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from podium.core.identity import BenchmarkIdentity
from podium.core.metric_names import latency_metric
from podium.core.records import BenchmarkRecord, Champion


@dataclass(frozen=True)
class ExistingBenchmark:
    run_id: str
    via: Literal["benchmark_key", "legacy_fallback"]


@dataclass(frozen=True)
class Lookup:
    """What an existence check found: the run that answers (None: measure), and the matching FINISHED runs
    that hold no result (named in a warning when nothing answers)."""

    found: ExistingBenchmark | None
    no_result: tuple[str, ...] = ()


def result_metrics(batch_sizes: Iterable[int]) -> tuple[str, ...]:
    """The metrics that make a benchmark run a result: the mean latency of every batch size measured."""
    return tuple(latency_metric(b) for b in sorted(set(batch_sizes)))


def holds_result(metrics: Mapping[str, float], required: Sequence[str]) -> bool:
    """Does a run hold every one of ``required``, none of them NaN?"""
    return all(name in metrics and not math.isnan(metrics[name]) for name in required)


def pick_with_result(runs: Iterable[tuple[str, bool]], via: Literal["benchmark_key", "legacy_fallback"]) -> Lookup:
    """The first of ``runs`` (run id, holds a result), newest first, that holds a result."""
    empty = []
    for run_id, has_result in runs:
        if has_result:
            return Lookup(ExistingBenchmark(run_id, via))
        empty.append(run_id)
    return Lookup(None, tuple(empty))


def legacy_matches(record: BenchmarkRecord, study: str, trial: str, config_hash: str) -> bool:
    """A run without ``benchmark_key`` stands for the same benchmark (backward compatibility)."""
    return (
        record.benchmark_key is None
        and record.study_key_hash == study
        and record.trial_key_hash == trial
        and record.config_hash in (None, config_hash)
    )


@dataclass
class BenchmarkIndex:
    """Finished benchmark runs indexed for many look-ups (``filter_missing_benchmarks``)."""

    by_key: dict[str, list[BenchmarkRecord]]
    legacy: list[BenchmarkRecord]

    @classmethod
    def build(cls, finished: Iterable[BenchmarkRecord]) -> BenchmarkIndex:
        """``finished`` in the store's order (newest first): the first run of a key that holds a result answers."""
        by_key: dict[str, list[BenchmarkRecord]] = {}
        legacy: list[BenchmarkRecord] = []
        for record in finished:
            if record.benchmark_key is None:
                legacy.append(record)
            else:
                by_key.setdefault(record.benchmark_key, []).append(record)
        return cls(by_key, legacy)

    def find(self, identity: BenchmarkIdentity, champion: Champion, required: Sequence[str] = ()) -> Lookup:
        """The run that answers for ``identity`` (its key, else a legacy run of the trial), holding ``required``."""
        keyed = pick_with_result(
            ((r.run_id, holds_result(r.metrics, required)) for r in self.by_key.get(identity.key, ())),
            "benchmark_key",
        )
        if keyed.found is not None:
            return keyed
        legacy = pick_with_result(
            (
                (r.run_id, holds_result(r.metrics, required))
                for r in self.legacy
                if legacy_matches(r, champion.study_key_hash, champion.trial_key_hash, identity.config_hash)
            ),
            "legacy_fallback",
        )
        return Lookup(legacy.found, keyed.no_result + legacy.no_result)
