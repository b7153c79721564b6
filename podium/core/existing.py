"""Is a benchmark already done? The rule, free of I/O, shared by the single check and the bulk filter.

PRIMARY: a FINISHED run tagged with the same ``benchmark_key``. FALLBACK, only for runs written
without that tag: same ``study_key_hash`` and ``trial_key_hash`` (and, when the legacy run carries a
config hash tag, the same config hash). A fallback match is always reported so it can be warned about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from podium.core.identity import BenchmarkIdentity
from podium.core.records import BenchmarkRecord, Champion


@dataclass(frozen=True)
class ExistingBenchmark:
    run_id: str
    via: Literal["benchmark_key", "legacy_fallback"]


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

    by_key: dict[str, str]
    legacy: list[BenchmarkRecord]

    @classmethod
    def build(cls, finished: Iterable[BenchmarkRecord]) -> BenchmarkIndex:
        by_key: dict[str, str] = {}
        legacy: list[BenchmarkRecord] = []
        for record in finished:
            if record.benchmark_key is None:
                legacy.append(record)
            else:
                by_key.setdefault(record.benchmark_key, record.run_id)
        return cls(by_key, legacy)

    def find(self, identity: BenchmarkIdentity, champion: Champion) -> ExistingBenchmark | None:
        run_id = self.by_key.get(identity.key)
        if run_id is not None:
            return ExistingBenchmark(run_id, "benchmark_key")
        for record in self.legacy:
            if legacy_matches(record, champion.study_key_hash, champion.trial_key_hash, identity.config_hash):
                return ExistingBenchmark(record.run_id, "legacy_fallback")
        return None
