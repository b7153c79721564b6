"""The run store port: what select, the aggregator and the worker path read from the tracking store, and the
benchmark run they write to it.

Implementations: :class:`podium.tracking.tracker.MlflowTracking` (an MLflow store: the source of truth) and
:class:`podium.testing.MemoryRunStore` (runs held in memory, for unit tests). One set of contract tests runs
over both (``tests/unit/test_run_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from podium.core.existing import ExistingBenchmark, result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.records import BenchmarkRecord, Champion, TrialRecord
from podium.core.selection import Selection
from podium.core.tags import TagsRegistry
from podium.core.verification import DEFAULT_SKEW, RunFacts, SkewBounds

#: What makes a run a result when the caller does not say (the default config measures batch size 1 only).
DEFAULT_RESULT_METRICS = result_metrics([1])

#: A selection's labels are keyed by (study_key_hash, benchmark_config_hash).
ScopeId = tuple[str, str | None]


@dataclass(frozen=True)
class ScopeLabels:
    """Readable names next to a scope's hashes: its study's label, the scope's own (study, backend, format,
    batch sizes), and the params and quality metric of the trials its selection names."""

    study_label: str | None
    label: str | None
    #: trial run id -> {"params": {...}, "metrics": {objective: value}}
    trials: Mapping[str, dict[str, Any]] = field(default_factory=dict)


class RunReads(Protocol):
    """What select and the aggregator read: runs as the core's records (FINISHED runs only, none whose tags
    break a rule), the facts of runs named by id, and readable names."""

    @property
    def tags(self) -> TagsRegistry:
        """The tag names and stage values the store's runs are read and written with."""
        ...

    @property
    def uri(self) -> str:
        """Where the store is, for logs and messages (no password)."""
        ...

    def experiment_ids(self, names: Sequence[str] | None = None) -> list[str]:
        """Ids of the named experiments, or of every active one when ``names`` is empty."""
        ...

    def load_benchmarks(
        self, experiment_ids: Sequence[str], skew: SkewBounds = DEFAULT_SKEW, now_ms: int | None = None
    ) -> list[BenchmarkRecord]:
        """Every FINISHED benchmark run of the experiments with grouping tags and a key that is the hash of its
        parts, placed in time as the live aggregator places it (a start after ``now_ms`` is not believed)."""
        ...

    def load_trials(self, experiment_ids: Sequence[str]) -> list[TrialRecord]:
        """Every FINISHED trial and refit run of the experiments."""
        ...

    def load_trial(self, study: str, trial: str) -> list[TrialRecord]:
        """The FINISHED trial and refit runs of one trial, in any experiment."""
        ...

    def load_champions(self, experiment_ids: Sequence[str], study: str | None = None) -> list[Champion]:
        """One champion per trial (of ``study``): the newest refit run if any, else the newest trial run."""
        ...

    def champion(self, run_id: str) -> Champion:
        """The champion made of one trial or refit run given by id (``TrackingError`` when there is none)."""
        ...

    def run_facts(self, run_ids: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, RunFacts]:
        """What the store says of each of these runs, whatever their status; unknown ids are absent."""
        ...

    def describe_selections(self, selections: Iterable[Selection]) -> dict[ScopeId, ScopeLabels]:
        """Labels and trial facts of every selection, keyed by (study, config hash)."""
        ...

    def warm_lookups(self) -> None:
        """Make the look-ups by id ready before the first one."""
        ...


class BenchmarkRuns(Protocol):
    """The worker path: is a benchmark done (the existence check), and the benchmark run's writes."""

    @property
    def tags(self) -> TagsRegistry: ...

    def benchmark_exists(
        self,
        identity: BenchmarkIdentity,
        champion: Champion,
        legacy_epoch: int = 0,
        result_metrics: Sequence[str] = DEFAULT_RESULT_METRICS,
    ) -> ExistingBenchmark | None:
        """A FINISHED run tagged with the key that holds ``result_metrics``; else a legacy run of the trial
        (no key tag) that holds them; else None. A FAILED or RUNNING run is never an answer."""
        ...

    def start_benchmark_run(
        self, tags: Mapping[str, str], run_name: str | None = None, start_time: int | None = None
    ) -> tuple[str, int]:
        """Create the RUNNING benchmark run with all its tags; return its id and start time (epoch ms)."""
        ...

    def record_summary(self, run_id: str, summary: Mapping[str, Any], filename: str) -> None:
        """The summary as the run's JSON artifact ``filename``."""
        ...

    def record_text(self, run_id: str, text: str, filename: str) -> None:
        """``text`` as the run's artifact ``filename`` (a Triton ``config.pbtxt``)."""
        ...

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
        """The summary as a JSON artifact ``filename`` (None: written already), and the run's metrics and extra
        tags; with ``finish`` the run is marked FINISHED with them (all or nothing where the store allows), else it
        stays RUNNING."""
        ...

    def finish_run(self, run_id: str) -> None:
        """Mark the run FINISHED."""
        ...

    def fail_run(self, run_id: str, reason: str, status: str = "FAILED", strict: bool = False) -> None:
        """End the run FAILED (or KILLED) with the reason as a tag; a store failure is raised only when
        ``strict``."""
        ...


class RunStore(RunReads, BenchmarkRuns, Protocol):
    """The whole port: the reads and the benchmark run's writes of one tracking store."""
