"""MLflow adapter: the session on one tracking store, and the :class:`~podium.core.store.RunStore` made of it.

This module holds the connection (opening a store, its experiments, paged searches, one error per failure of
the store); the rest is split by concern and composed here: runs parsed into records
(:mod:`podium.tracking.records`), the reads select and the aggregator make (:mod:`podium.tracking.reads`), the
existence check (:mod:`podium.tracking.existence`) and the benchmark run's writes
(:mod:`podium.tracking.writes`). Every value put into a filter string goes through :mod:`podium.core.filters`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from podium.core.existing import BenchmarkIndex, ExistingBenchmark
from podium.core.identity import BenchmarkIdentity
from podium.core.messages import StoreRef
from podium.core.records import BenchmarkRecord, Champion, RefusedRun, TrialRecord
from podium.core.selection import Selection
from podium.core.store import DEFAULT_RESULT_METRICS, ScopeId, ScopeLabels
from podium.core.tags import TagsRegistry
from podium.core.verification import DEFAULT_SKEW, RunFacts, SkewBounds
from podium.errors import TrackingError
from podium.settings.env import PodiumSettings, redact_url
from podium.settings.files import load_tags
from podium.tracking.existence import ExistenceCheck, legacy_filter, warn_fallback, warn_no_result
from podium.tracking.experiments import Experiments
from podium.tracking.opening import open_client
from podium.tracking.reads import StoreReads
from podium.tracking.records import RunRecords, fact_tags
from podium.tracking.store_errors import STORE_ERRORS, why
from podium.tracking.tables import RunTables, StoredRun
from podium.tracking.warm_writes import warm_writes
from podium.tracking.writes import BenchmarkWrites

__all__ = ["DEFAULT_RESULT_METRICS", "MlflowTracking", "fact_tags", "warn_fallback", "warn_no_result"]

log = logging.getLogger(__name__)

#: Runs fetched per ``search_runs`` page (MLflow's sqlalchemy store allows up to 50,000).
PAGE_SIZE = 10_000
#: MLflow's Default experiment: every store has it from its creation (its creation time names the store).
DEFAULT_EXPERIMENT_ID = "0"


class MlflowTracking:
    """Benchmark and trial runs of one tracking store, read and written through a tags registry."""

    def __init__(
        self,
        client: MlflowClient,
        tags: TagsRegistry,
        benchmark_experiment: str = "podium-benchmarks",
        objective_metric: str = "macro-f1",
        tables: RunTables | None = None,
    ):
        self.client = client
        #: The store's run tables, read directly for look-ups by id (a database store); None: search_runs.
        self.tables = tables
        self.benchmark_experiment = benchmark_experiment
        self.experiments = Experiments(self)
        self._store_ref: StoreRef | None = None
        #: How runs become records (and which are refused): shared by every read below.
        self.records = RunRecords(tags, objective_metric)
        self.reads = StoreReads(self)
        self.existence = ExistenceCheck(self)
        self.writes = BenchmarkWrites(self)

    @property
    def tags(self) -> TagsRegistry:
        return self.records.tags

    @property
    def objective_metric(self) -> str:
        return self.records.objective_metric

    @property
    def refused(self) -> dict[str, RefusedRun]:
        """run id -> why it was skipped: its tags break a rule (left out of every read, warned about once)."""
        return self.records.refused

    @classmethod
    def connect(
        cls,
        tracking_uri: str,
        tags: TagsRegistry,
        benchmark_experiment: str = "podium-benchmarks",
        objective_metric: str = "macro-f1",
        *,
        create: bool = False,
    ) -> MlflowTracking:
        """A tracker on ``tracking_uri``. The store must exist and be complete (``StoreNotReady`` otherwise: wait
        and try again); only with ``create`` (``podium demo``, which owns its store) is a sqlite store created."""
        client = open_client(tracking_uri, create)
        return cls(client, tags, benchmark_experiment, objective_metric, RunTables.for_uri(tracking_uri))

    @classmethod
    def from_settings(
        cls,
        settings: PodiumSettings,
        objective_metric: str = "macro-f1",
        *,
        tracking_uri: str | None = None,
        create: bool = False,
    ) -> MlflowTracking:
        """The tracker an entrypoint uses: ``settings``' store (or ``tracking_uri``), ``config/tags.yaml``,
        ``settings``' benchmark experiment."""
        return cls.connect(
            tracking_uri or settings.tracking_uri,
            load_tags(None, settings.config_dir),
            settings.benchmark_experiment,
            objective_metric,
            create=create,
        )

    # ------------------------------------------------------------------ experiments

    def experiment_ids(self, names: Sequence[str] | None = None) -> list[str]:
        """Ids of the named experiments, or of every active one when ``names`` is empty."""
        return self.experiments.ids(names)

    def recent_experiment_ids(self) -> list[str]:
        """Active experiment ids for the hot existence check (re-listed at most every ``EXPERIMENTS_TTL_S``)."""
        return self.experiments.recent_ids()

    def benchmark_experiment_id(self) -> str:
        """The experiment podium writes benchmark runs to, created on first use."""
        return self.experiments.benchmark_id()

    def find_benchmark_experiment(self) -> str | None:
        """The benchmark experiment's id when it exists, else None; only reads (a worker's warm-up)."""
        return self.experiments.find_benchmark()

    def _uri(self) -> str:
        return str(self.client.tracking_uri)

    def store_ref(self) -> StoreRef:
        """This store's identity for requests (read once: the Default experiment's creation time)."""
        if self._store_ref is None:
            with self.in_store("reading the store's identity"):
                created = self.client.get_experiment(DEFAULT_EXPERIMENT_ID).creation_time
            self._store_ref = StoreRef(uri=self.uri, id=f"created-{created}")
        return self._store_ref

    @property
    def uri(self) -> str:
        """The tracking URI, with any password hidden (for logs and messages)."""
        return redact_url(self._uri())

    @contextlib.contextmanager
    def in_store(self, doing: str) -> Iterator[None]:
        """Any failure of the store becomes one ``TrackingError`` that says what podium was doing, and where."""
        try:
            yield
        except STORE_ERRORS as exc:
            raise TrackingError(f"{doing} in the MLflow store {self.uri} failed: {why(exc)}") from exc

    # ------------------------------------------------------------------ searching

    def search(self, experiment_ids: Sequence[str], filter_string: str, page_size: int = PAGE_SIZE) -> Iterator[Run]:
        """Every active run matching a filter built with :mod:`podium.core.filters`, page by page."""
        token = None
        while True:
            with self.in_store(f"searching runs ({filter_string})"):
                page = self.client.search_runs(
                    experiment_ids=list(experiment_ids),
                    filter_string=filter_string,
                    run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=page_size,
                    page_token=token,
                )
            yield from page
            token = page.token
            if not token:
                return

    def first_runs(
        self, experiment_ids: Sequence[str], filter_string: str, limit: int, doing: str, every_status: bool = False
    ) -> list[Run]:
        """The first ``limit`` runs matching a filter (newest first), active ones only unless ``every_status``
        (then deleted ones too): one page, one query."""
        with self.in_store(doing):
            return list(
                self.client.search_runs(
                    experiment_ids=list(experiment_ids),
                    filter_string=filter_string,
                    run_view_type=ViewType.ALL if every_status else ViewType.ACTIVE_ONLY,
                    max_results=limit,
                )
            )

    # ------------------------------------------------------------------ warming

    def warm_lookups(self) -> None:
        """Make the look-ups by id ready before the first one (experiment list, database connection): the
        aggregator's first live event after a rebuild paid ~40 ms for them."""
        self.recent_experiment_ids()
        if self.tables is not None:
            with self.in_store("opening the run tables"):
                self.tables.warm()

    def warm_worker_reads(self) -> None:
        """A worker's read paths connected and compiled before its first request, writing nothing: the existence
        check and the legacy look-up for a key and study that have no runs, a run looked up by an id that does
        not exist, the logged-model look-up of a model fetch (MLflow's ORM compiles each query on first use: ~0.3 s of
        a first request); then the writes of one benchmark run, compiled and rolled back."""
        nothing = "0" * 64
        with self.in_store("warming the look-ups"):
            ids = self.experiment_ids()
            own = self.find_benchmark_experiment()
            ids = ids if own is None or own in ids else [*ids, own]
            if self.tables is not None:
                self.tables.warm()
                self.tables.finished_runs_tagged(self.tags.benchmark.key, nothing, ids, DEFAULT_RESULT_METRICS, 1)
            self.client.search_runs(ids, legacy_filter(self.tags, nothing), ViewType.ACTIVE_ONLY, max_results=1)
            with contextlib.suppress(MlflowException):
                self.client.get_run(nothing[:32])
            if ids:  # a model fetched by its run looks for the run's logged models first (MLflow 3)
                with contextlib.suppress(MlflowException):
                    self.client.search_logged_models(ids[:1], filter_string="name = 'podium-warm-up'", max_results=1)
        # and the writes compiled in a transaction that is rolled back (see podium.tracking.warm_writes)
        warm_writes(self.client, own if own is not None else DEFAULT_EXPERIMENT_ID)

    # ------------------------------------------------------------------ the RunStore port, composed

    def load_benchmarks(
        self, experiment_ids: Sequence[str], skew: SkewBounds = DEFAULT_SKEW, now_ms: int | None = None
    ) -> list[BenchmarkRecord]:
        return self.reads.load_benchmarks(experiment_ids, skew, now_ms)

    def load_trials(self, experiment_ids: Sequence[str]) -> list[TrialRecord]:
        return self.reads.load_trials(experiment_ids)

    def load_trial(self, study: str, trial: str) -> list[TrialRecord]:
        return self.reads.load_trial(study, trial)

    def load_champions(self, experiment_ids: Sequence[str], study: str | None = None) -> list[Champion]:
        return self.reads.load_champions(experiment_ids, study)

    def champion(self, run_id: str) -> Champion:
        return self.reads.champion(run_id)

    def runs_by_id(
        self, run_ids: Sequence[str], tags: Sequence[str] | None = None, metrics: Sequence[str] | None = None
    ) -> dict[str, StoredRun]:
        return self.reads.runs_by_id(run_ids, tags, metrics)

    def run_facts(self, run_ids: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, RunFacts]:
        return self.reads.run_facts(run_ids, metrics)

    def benchmark_index(self) -> BenchmarkIndex:
        return self.reads.benchmark_index()

    def describe_selections(self, selections: Iterable[Selection]) -> dict[ScopeId, ScopeLabels]:
        from podium.tracking.labels import describe_selections

        return describe_selections(self, selections)

    def benchmark_exists(
        self,
        identity: BenchmarkIdentity,
        champion: Champion,
        legacy_epoch: int = 0,
        result_metrics: Sequence[str] = DEFAULT_RESULT_METRICS,
    ) -> ExistingBenchmark | None:
        return self.existence.benchmark_exists(identity, champion, legacy_epoch, result_metrics)

    def start_benchmark_run(
        self, tags: Mapping[str, str], run_name: str | None = None, start_time: int | None = None
    ) -> tuple[str, int]:
        return self.writes.start_benchmark_run(tags, run_name, start_time)

    def record_summary(self, run_id: str, summary: Mapping[str, Any], filename: str) -> None:
        self.writes.record_summary(run_id, summary, filename)

    def record_text(self, run_id: str, text: str, filename: str) -> None:
        self.writes.record_text(run_id, text, filename)

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
        self.writes.record_results(run_id, metrics, summary, filename, extra_tags, finish=finish)

    def finish_run(self, run_id: str) -> None:
        self.writes.finish_run(run_id)

    def fail_run(self, run_id: str, reason: str, status: str = "FAILED", strict: bool = False) -> None:
        self.writes.fail_run(run_id, reason, status, strict)

    def log_benchmark_run(
        self,
        tags: Mapping[str, str],
        metrics: Mapping[str, float],
        summary: Mapping[str, Any],
        filename: str = "benchmark.json",
        run_name: str | None = None,
    ) -> str:
        return self.writes.log_benchmark_run(tags, metrics, summary, filename, run_name)
