"""MLflow adapter: the only module that talks to the tracking store.

Reads page through ``search_runs`` (one paged query per stage, never one query per run); writes use as
few calls as MLflow allows (``create_run`` with all tags, one ``log_batch``, one artifact, one
``set_terminated``). Every value put into a filter string goes through :mod:`podium.core.filters`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from podium.core.existing import (
    BenchmarkIndex,
    ExistingBenchmark,
    Lookup,
    holds_result,
    pick_with_result,
    result_metrics,
)
from podium.core.filters import all_of, run_id_in, status_is, tag_eq, tag_is_null
from podium.core.identity import UNKNOWN_FINGERPRINT, BenchmarkIdentity
from podium.core.messages import StoreRef
from podium.core.plain import looks_like_run_id
from podium.core.records import BenchmarkRecord, Champion, RefusedRun, Rule, TrialRecord, refused_tag
from podium.core.safety import require_safe
from podium.core.state import TrialSide
from podium.core.tags import TagsRegistry
from podium.core.verification import DEFAULT_SKEW, RunFacts, SkewBounds, key_problem, stored_start
from podium.errors import StoreNotReady, StoreUnavailable, TrackingError
from podium.settings.env import PodiumSettings, redact_url
from podium.settings.files import load_tags
from podium.tracking.readiness import sqlite_path, store_state
from podium.tracking.sqlite import open_sqlite
from podium.tracking.tables import RunTables, StoredRun
from podium.tracking.warm_writes import warm_writes

log = logging.getLogger(__name__)

#: Runs fetched per ``search_runs`` page (MLflow's sqlalchemy store allows up to 50,000).
PAGE_SIZE = 10_000
#: The list of active experiments is re-read at most this often by the existence check.
EXPERIMENTS_TTL_S = 10.0
#: MLflow accepts at most this many metrics / tags in one ``log_batch``.
MAX_BATCH_METRICS = 1000
#: How long "this study has no legacy benchmark runs" is believed before it is asked again.
LEGACY_TTL_S = 300.0
#: Run ids per ``run_id IN (...)`` lookup.
RUN_ID_CHUNK = 500
MAX_TAG_VALUE = 5000
#: MLflow's HTTP client defaults retry for minutes (an unreachable server took 266 s to fail); podium's
#: processes fail in seconds instead, and never print run links to stdout. Environment values win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
#: Store URI schemes podium can open (MLflow's own list is longer; these are the ones a team uses with it).
SCHEMES = (
    "sqlite",
    "http",
    "https",
    "postgresql",
    "postgresql+psycopg2",
    "mysql",
    "mysql+pymysql",
    "file",
    "databricks",
)
#: MLflow's Default experiment: every store has it from its creation (its creation time names the store).
DEFAULT_EXPERIMENT_ID = "0"
#: Artifact locations remembered for runs not yet ended (a worker has one or two at a time).
MAX_OPEN_RUNS = 256
#: Refused runs remembered (each is warned about once per process, however often it is read again).
MAX_REFUSED = 10_000
#: FINISHED runs of one key read by the existence check (normally one; more only after force_new runs).
KEY_RUNS_READ = 20
#: What makes a run a result when the caller does not say (the default config measures batch size 1 only).
DEFAULT_RESULT_METRICS = result_metrics([1])
#: What a store can raise besides MlflowException: a locked or broken sqlite file, an unreachable server.
STORE_ERRORS = (MlflowException, SQLAlchemyError, OSError)


def _why(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:500]


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
        self.tags = tags
        self.benchmark_experiment = benchmark_experiment
        self.objective_metric = objective_metric
        self._benchmark_experiment_id: str | None = None
        self._experiments: tuple[float, list[str]] = (-1e9, [])
        #: (experiment ids, study) -> (checked at, legacy epoch, has legacy runs)
        self._legacy_studies: dict[tuple[tuple[str, ...], str], tuple[float, int, bool]] = {}
        self._legacy_epoch = 0
        #: run id -> artifact URI of the benchmark runs this tracker created and has not ended yet: their
        #: benchmark.json goes straight to that location (MLflow's client would read the run back to learn it)
        self._artifact_uris: dict[str, str] = {}
        self._store_ref: StoreRef | None = None
        #: run id -> why it was skipped: runs whose tags break a rule (``podium.core.records.refused_tag``),
        #: left out of every read and warned about once
        self.refused: dict[str, RefusedRun] = {}

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
        scheme = tracking_uri.split(":", 1)[0] if ":" in tracking_uri else ""
        if scheme not in SCHEMES:
            raise TrackingError(
                f"tracking URI {redact_url(tracking_uri)!r} has an unknown scheme {scheme!r}; use sqlite:///path/to/"
                "mlflow.db or http(s)://host:port (an MLflow tracking server), e.g. in PODIUM_TRACKING_URI"
            )
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if create:
            db = sqlite_path(tracking_uri)
            if db is not None and db.is_file() and db.stat().st_size == 0:
                raise TrackingError(
                    f"{db} is an empty file, not an MLflow store; remove it to let podium create a store there, "
                    "or point PODIUM_TRACKING_URI at the right file"
                )
        else:
            state = store_state(tracking_uri)
            if not state.ready:
                raise StoreNotReady(
                    f"no MLflow store at {redact_url(tracking_uri)} yet ({state.why}); podium never creates one "
                    "(your training's first MLflow call does): point --tracking-uri or PODIUM_TRACKING_URI at the "
                    "store your training writes to"
                )
        if tracking_uri.startswith("sqlite:///"):
            try:
                client = open_sqlite(tracking_uri, Path(tracking_uri.removeprefix("sqlite:///")))
            except STORE_ERRORS as exc:  # locked by another writer, a disk error: may pass, unlike a bad URI
                raise StoreUnavailable(f"opening the MLflow store {tracking_uri} failed: {_why(exc)}") from exc
        else:
            client = MlflowClient(tracking_uri=tracking_uri)
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
        if not names and self.tables is not None:
            with self._store("listing the active experiments"):
                return self.tables.active_experiment_ids()
        with self._store("listing the experiments"):
            active = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50_000)
        if not names:
            return [e.experiment_id for e in active]
        by_name = {e.name: e.experiment_id for e in active}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise TrackingError(
                f"no active experiment named {', '.join(map(repr, missing))} in {self._uri()}; "
                f"active experiments: {', '.join(sorted(by_name)) or 'none'}"
            )
        return [by_name[n] for n in names]

    def recent_experiment_ids(self) -> list[str]:
        """Active experiment ids for the hot existence check: podium's benchmark experiment always, the
        others re-listed at most every ``EXPERIMENTS_TTL_S`` (an experiment created elsewhere in the last
        few seconds is the only one not yet searched)."""
        at, ids = self._experiments
        if time.monotonic() - at > EXPERIMENTS_TTL_S:
            ids = self.experiment_ids()
            self._experiments = (time.monotonic(), ids)
        own = self.benchmark_experiment_id()
        return ids if own in ids else [*ids, own]

    def benchmark_experiment_id(self) -> str:
        """The experiment podium writes benchmark runs to, created on first use."""
        if self._benchmark_experiment_id is None:
            with self._store(f"opening the experiment {self.benchmark_experiment!r}"):
                self._benchmark_experiment_id = self._get_or_create(self.benchmark_experiment)
        return self._benchmark_experiment_id

    def find_benchmark_experiment(self) -> str | None:
        """The benchmark experiment's id when it exists (remembered), else None; only reads (a worker's warm-up)."""
        if self._benchmark_experiment_id is None:
            with self._store(f"looking up the experiment {self.benchmark_experiment!r}"):
                exp = self.client.get_experiment_by_name(self.benchmark_experiment)
            if exp is not None:
                self._benchmark_experiment_id = str(exp.experiment_id)
        return self._benchmark_experiment_id

    def _get_or_create(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=self.default_artifact_location()))
        except MlflowException:  # created concurrently by another worker
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def default_artifact_location(self) -> str | None:
        """For a sqlite store, artifacts live in ``artifacts/`` beside the database file (not in ./mlruns)."""
        uri = self._uri()
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("artifacts").as_uri()
        return None

    def _uri(self) -> str:
        return str(self.client.tracking_uri)

    def store_ref(self) -> StoreRef:
        """This store's identity for requests (read once: the Default experiment's creation time)."""
        if self._store_ref is None:
            with self._store("reading the store's identity"):
                created = self.client.get_experiment(DEFAULT_EXPERIMENT_ID).creation_time
            self._store_ref = StoreRef(uri=self.uri, id=f"created-{created}")
        return self._store_ref

    @property
    def uri(self) -> str:
        """The tracking URI, with any password hidden (for logs and messages)."""
        return redact_url(self._uri())

    @contextlib.contextmanager
    def _store(self, doing: str) -> Iterator[None]:
        """Any failure of the store becomes one ``TrackingError`` that says what podium was doing, and where."""
        try:
            yield
        except STORE_ERRORS as exc:
            raise TrackingError(f"{doing} in the MLflow store {self.uri} failed: {_why(exc)}") from exc

    # ------------------------------------------------------------------ reading

    def search(self, experiment_ids: Sequence[str], filter_string: str, page_size: int = PAGE_SIZE) -> Iterator[Run]:
        """Every active run matching a filter built with :mod:`podium.core.filters`, page by page."""
        token = None
        while True:
            with self._store(f"searching runs ({filter_string})"):
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

    def _finished_stage(self, experiment_ids: Sequence[str], stage: str) -> Iterator[Run]:
        if not experiment_ids:
            return iter(())
        return self.search(experiment_ids, all_of(tag_eq(self.tags.stage.key, stage), status_is("FINISHED")))

    def load_benchmarks(
        self, experiment_ids: Sequence[str], skew: SkewBounds = DEFAULT_SKEW, now_ms: int | None = None
    ) -> list[BenchmarkRecord]:
        """Every FINISHED benchmark run of the experiments that carries the grouping tags, none that breaks a
        rule on its tags, each placed in time as the live aggregator places it (``stored_start``: a start
        after ``now_ms``, default this machine's clock, is not believed)."""
        out = []
        now_ms = _now_ms() if now_ms is None else now_ms
        for run in self._finished_stage(experiment_ids, self.tags.stage.benchmark):
            facts = self._facts(StoredRun.of(run))
            if facts.refused is not None:
                continue
            if facts.record is None:
                log.warning(
                    "Benchmark run %s has no %s/%s tags; it cannot be grouped and is left out.",
                    run.info.run_id,
                    self.tags.grouping.study_key_hash,
                    self.tags.grouping.trial_key_hash,
                )
                continue
            if (problem := key_problem(facts)) is not None:  # what the live check dead-letters
                log.warning("%s; it is left out.", problem)
                continue
            record, warning = stored_start(facts.record, run.info.end_time, now_ms, skew)
            if warning is not None:
                log.warning("Benchmark %s.", warning)
            out.append(record)
        return out

    def load_trials(self, experiment_ids: Sequence[str]) -> list[TrialRecord]:
        """Every FINISHED trial and refit run, newest-per-trial resolution is left to the core; and the plain
        MLflow runs (no podium tags) that a benchmark run of these experiments measured."""
        from podium.tracking.plain_runs import benchmarked_plain_trials

        out = []
        for stage, kind in ((self.tags.stage.hpo_trial, "trial"), (self.tags.stage.refit, "refit")):
            for run in self._finished_stage(experiment_ids, stage):
                record = self.trial_record(run, kind)
                if record is not None:
                    out.append(record)
        return out + benchmarked_plain_trials(self, experiment_ids)

    def load_trial(self, study: str, trial: str) -> list[TrialRecord]:
        """The FINISHED trial and refit runs of one trial (the aggregator's look-up for a new trial)."""
        out = []
        for stage, kind in ((self.tags.stage.hpo_trial, "trial"), (self.tags.stage.refit, "refit")):
            flt = all_of(
                tag_eq(self.tags.stage.key, stage),
                tag_eq(self.tags.grouping.study_key_hash, study),
                tag_eq(self.tags.grouping.trial_key_hash, trial),
                status_is("FINISHED"),
            )
            for run in self.search(self.experiment_ids(), flt):
                record = self.trial_record(run, kind)
                if record is not None:
                    out.append(record)
        if not out and looks_like_run_id(trial):  # a plain MLflow run: its trial_key_hash is its run id
            from podium.tracking.plain_runs import plain_trial

            return plain_trial(self, study, trial)
        return out

    def _grouping(self, run: Run | StoredRun) -> tuple[str, str] | None:
        """The (study, trial) hashes a run is grouped by, or None when it lacks either tag."""
        tags = run.tags if isinstance(run, StoredRun) else run.data.tags
        study = tags.get(self.tags.grouping.study_key_hash)
        trial = tags.get(self.tags.grouping.trial_key_hash)
        return (study, trial) if study and trial else None

    def _refused(self, run_id: str, checks: Sequence[tuple[str, str | None, Rule]]) -> RefusedRun | None:
        """The rule a run's tags break, warned about once per run; None when they meet every rule."""
        refused = refused_tag(run_id, checks)
        if refused is not None and run_id not in self.refused:
            if len(self.refused) >= MAX_REFUSED:
                self.refused.pop(next(iter(self.refused)))
            self.refused[run_id] = refused
            log.warning("%s.", refused)
        return refused

    def benchmark_refusal(self, run: StoredRun) -> RefusedRun | None:
        """Why a benchmark run's tags cannot be used (filters, Redis keys, messages), or None."""
        b, g, tags = self.tags.benchmark, self.tags.grouping, run.tags
        rules: tuple[tuple[str, Rule], ...] = (
            (g.study_key_hash, "safe"),
            (g.trial_key_hash, "safe"),
            (b.key, "safe"),  # hex when podium wrote it; what filters and Redis keys need, whoever did
            (b.config_hash, "safe"),
            (b.champion_run_id, "safe"),
            (b.data_fp, "text"),
            (b.eval_fp, "text"),
        )
        return self._refused(run.run_id, [(tag, tags.get(tag) or None, rule) for tag, rule in rules])

    def benchmark_record(self, run: Run | StoredRun) -> BenchmarkRecord | None:
        """The record of a benchmark run; None when it lacks the grouping tags or its tags break a rule."""
        stored = run if isinstance(run, StoredRun) else StoredRun.of(run)
        return None if self.benchmark_refusal(stored) is not None else self._benchmark_record(stored)

    def _benchmark_record(self, stored: StoredRun) -> BenchmarkRecord | None:
        grouping = self._grouping(stored)
        if grouping is None:
            return None
        study, trial = grouping
        return BenchmarkRecord(
            run_id=stored.run_id,
            start_time=stored.start_time,
            study_key_hash=study,
            trial_key_hash=trial,
            benchmark_key=stored.tags.get(self.tags.benchmark.key) or None,
            config_hash=stored.tags.get(self.tags.benchmark.config_hash) or None,
            metrics=dict(stored.metrics),
            stability=stored.tags.get(self.tags.benchmark.stability) or "",
            contended=stored.tags.get(self.tags.benchmark.contended) or "",
        )

    def trial_refusal(self, run: Run) -> RefusedRun | None:
        """Why a trial or refit run's tags cannot be used (filters, Redis keys, requests), or None."""
        g, f, tags = self.tags.grouping, self.tags.fingerprint, run.data.tags
        rules: tuple[tuple[str, Rule], ...] = (
            (g.study_key_hash, "safe"),
            (g.trial_key_hash, "safe"),
            (f.data, "text"),
            (f.eval, "text"),
        )
        return self._refused(run.info.run_id, [(tag, tags.get(tag) or None, rule) for tag, rule in rules])

    def trial_record(self, run: Run, kind: str) -> TrialRecord | None:
        """The record of a trial or refit run; None when it lacks the grouping tags or its tags break a rule."""
        grouping = self._grouping(run)
        if grouping is None or self.trial_refusal(run) is not None:
            return None
        study, trial = grouping
        tags = run.data.tags
        return TrialRecord(
            run_id=run.info.run_id,
            kind=kind,  # type: ignore[arg-type]
            start_time=run.info.start_time or 0,
            study_key_hash=study,
            trial_key_hash=trial,
            objective=run.data.metrics.get(self.objective_metric),
            backbone=run.data.params.get(self.tags.model.backbone_param) or tags.get(self.tags.model.backbone_tag),
            data_fp=tags.get(self.tags.fingerprint.data),
            eval_fp=tags.get(self.tags.fingerprint.eval),
        )

    def load_champions(self, experiment_ids: Sequence[str], study: str | None = None) -> list[Champion]:
        """One champion per trial: the newest refit run if any, else the newest trial run."""
        if study is not None:
            require_safe(study, "study_key_hash")
        sides: dict[tuple[str, str], TrialSide] = {}
        for record in self.load_trials(experiment_ids):
            if study is None or record.study_key_hash == study:
                sides.setdefault((record.study_key_hash, record.trial_key_hash), TrialSide()).add(record)
        champions = []
        for (study_hash, trial_hash), side in sorted(sides.items()):
            chosen = side.refit or side.trial
            other = side.trial or chosen
            assert chosen is not None and other is not None  # a side exists only once a run was added
            champions.append(
                Champion(
                    run_id=chosen.run_id,
                    study_key_hash=study_hash,
                    trial_key_hash=trial_hash,
                    data_fp=chosen.data_fp or other.data_fp or UNKNOWN_FINGERPRINT,
                    eval_fp=chosen.eval_fp or other.eval_fp or UNKNOWN_FINGERPRINT,
                )
            )
        return champions

    def champion(self, run_id: str) -> Champion:
        """The champion made of one run (trial or refit) given by id."""
        require_safe(run_id, "run id")
        try:
            with self._store(f"reading run {run_id}"):
                run = self.client.get_run(run_id)
        except TrackingError as exc:
            if getattr(exc.__cause__, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise TrackingError(f"run {run_id} not found in the MLflow store {self.uri}") from None
            raise
        record = self.trial_record(run, "refit")
        if (refused := self.refused.get(run_id)) is not None:
            raise TrackingError(f"run {run_id} cannot be benchmarked: its tag {refused.tag} {refused.problem}")
        if record is None:
            raise TrackingError(
                f"run {run_id} has no {self.tags.grouping.study_key_hash} / {self.tags.grouping.trial_key_hash} "
                "tags; benchmark it with podium enqueue --run-id (plain MLflow runs are adopted as they are)"
            )
        return Champion(
            run_id=run_id,
            study_key_hash=record.study_key_hash,
            trial_key_hash=record.trial_key_hash,
            data_fp=record.data_fp or UNKNOWN_FINGERPRINT,
            eval_fp=record.eval_fp or UNKNOWN_FINGERPRINT,
        )

    # ------------------------------------------------------------------ idempotency

    def benchmark_exists(
        self,
        identity: BenchmarkIdentity,
        champion: Champion,
        legacy_epoch: int = 0,
        result_metrics: Sequence[str] = DEFAULT_RESULT_METRICS,
    ) -> ExistingBenchmark | None:
        """PRIMARY: a FINISHED run tagged with the key that holds ``result_metrics`` (one indexed query).
        FALLBACK, only among runs without that tag and only in a study that has any: a legacy run of the same
        trial (and config, when it says one) holding them, with a warning that names the run. A FINISHED run
        that matches but holds no result is no answer: it is named in a warning, and the benchmark measured.

        Whether a study has legacy runs is learned once per (experiments, study) and remembered for
        ``LEGACY_TTL_S`` or until ``legacy_epoch`` changes (``podium backfill`` and the sweeper bump it), so
        a study written only by podium never pays the ``IS NULL`` query, whatever the size of the store."""
        if legacy_epoch != self._legacy_epoch:  # legacy runs may have appeared, in new experiments too
            self._legacy_epoch = legacy_epoch
            self._experiments = (-1e9, [])
        ids = self.recent_experiment_ids()
        keyed = self._finished_runs_tagged(ids, self.tags.benchmark.key, identity.key, result_metrics)
        if keyed.found is not None:
            return keyed.found
        lookup = keyed
        if self._study_has_legacy(ids, champion.study_key_hash, legacy_epoch):
            legacy = self._legacy_filter(champion.study_key_hash, champion.trial_key_hash)
            records = [r for r in map(self.benchmark_record, self.search(ids, legacy)) if r]
            found = BenchmarkIndex.build(records).find(identity, champion, result_metrics)
            lookup = Lookup(found.found, keyed.no_result + found.no_result)
            if found.found is not None:
                warn_fallback(found.found, champion)
        warn_no_result(lookup, identity, result_metrics)
        return lookup.found

    def _finished_runs_tagged(
        self, experiment_ids: Sequence[str], key: str, value: str, result_metrics: Sequence[str]
    ) -> Lookup:
        """The newest FINISHED run tagged ``key=value`` that holds ``result_metrics``, and those that do not."""
        if self.tables is not None:
            with self._store(f"looking up a FINISHED run tagged {key}={value[:12]}"):
                runs = self.tables.finished_runs_tagged(key, value, experiment_ids, result_metrics, KEY_RUNS_READ)
            return pick_with_result(runs, "benchmark_key")
        with self._store(f"looking up a FINISHED run tagged {key}={value[:12]}"):
            page = self.client.search_runs(
                experiment_ids=list(experiment_ids),
                filter_string=all_of(tag_eq(key, value), status_is("FINISHED")),
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=KEY_RUNS_READ,
            )
        return pick_with_result(
            ((run.info.run_id, holds_result(run.data.metrics, result_metrics)) for run in page), "benchmark_key"
        )

    def _legacy_filter(self, study: str, trial: str | None = None) -> str:
        """FINISHED benchmark runs of a study (and trial) written without a ``benchmark_key`` tag."""
        clauses = [tag_eq(self.tags.stage.key, self.tags.stage.benchmark)]
        clauses.append(tag_eq(self.tags.grouping.study_key_hash, study))
        if trial is not None:
            clauses.append(tag_eq(self.tags.grouping.trial_key_hash, trial))
        return all_of(*clauses, tag_is_null(self.tags.benchmark.key), status_is("FINISHED"))

    def _study_has_legacy(self, experiment_ids: Sequence[str], study: str, epoch: int) -> bool:
        """Does the study have any FINISHED benchmark run without a ``benchmark_key`` tag? (cached)"""
        key = (tuple(experiment_ids), study)
        cached = self._legacy_studies.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] == epoch and now - cached[0] < LEGACY_TTL_S:
            return cached[2]
        with self._store(f"looking for legacy benchmark runs of study {study[:12]}"):
            page = self.client.search_runs(
                experiment_ids=list(experiment_ids),
                filter_string=self._legacy_filter(study),
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1,
            )
        has = len(page) > 0
        self._legacy_studies[key] = (now, epoch, has)
        return has

    def warm_lookups(self) -> None:
        """Make the look-ups by id ready before the first one (experiment list, database connection): the
        aggregator's first live event after a rebuild paid ~40 ms for them."""
        self.recent_experiment_ids()
        if self.tables is not None:
            with self._store("opening the run tables"):
                self.tables.warm()

    def warm_worker_reads(self) -> None:
        """A worker's read paths connected and compiled before its first request, writing nothing: the existence
        check and the legacy look-up for a key and study that have no runs, a run looked up by an id that does
        not exist (MLflow's ORM compiles each query on first use: ~0.3 s of a first request); then the writes of
        one benchmark run, compiled and rolled back."""
        nothing = "0" * 64
        with self._store("warming the look-ups"):
            ids = self.experiment_ids()
            own = self.find_benchmark_experiment()
            ids = ids if own is None or own in ids else [*ids, own]
            if self.tables is not None:
                self.tables.warm()
                self.tables.finished_runs_tagged(self.tags.benchmark.key, nothing, ids, DEFAULT_RESULT_METRICS, 1)
            self.client.search_runs(ids, self._legacy_filter(nothing), ViewType.ACTIVE_ONLY, max_results=1)
            with contextlib.suppress(MlflowException):
                self.client.get_run(nothing[:32])
        # and the writes compiled in a transaction that is rolled back (see podium.tracking.warm_writes)
        warm_writes(self.client, own if own is not None else DEFAULT_EXPERIMENT_ID)

    def runs_by_id(
        self, run_ids: Sequence[str], tags: Sequence[str] | None = None, metrics: Sequence[str] | None = None
    ) -> dict[str, StoredRun]:
        """The runs with these ids, whatever their status, in one query per chunk (ids not found are absent):
        read from the run tables of a database store, else with ``search_runs``. With ``tags`` or ``metrics``,
        a run holds only those it has of the names given."""
        out: dict[str, StoredRun] = {}
        ids = sorted(set(run_ids))
        experiments = self.recent_experiment_ids()
        for start in range(0, len(ids), RUN_ID_CHUNK):
            chunk = ids[start : start + RUN_ID_CHUNK]
            if self.tables is not None:
                with self._store(f"reading {len(chunk)} run(s) by id"):
                    out.update(self.tables.runs(chunk, experiments, tags, metrics))
                continue
            with self._store(f"looking up {len(chunk)} run(s) by id"):
                page = self.client.search_runs(
                    experiment_ids=experiments,
                    filter_string=run_id_in(chunk),
                    run_view_type=ViewType.ALL,
                    max_results=len(chunk),
                )
            out.update((run.info.run_id, StoredRun.of(run).only(tags, metrics)) for run in page)
        return out

    def run_facts(self, run_ids: Sequence[str], metrics: Sequence[str] | None = None) -> dict[str, RunFacts]:
        """What MLflow says about each of these runs (status, record, identity tags); unknown ids are absent.
        ``metrics``: the only metrics the records need (default: all)."""
        return {
            run_id: self._facts(run) for run_id, run in self.runs_by_id(run_ids, fact_tags(self.tags), metrics).items()
        }

    def _facts(self, run: StoredRun) -> RunFacts:
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

    def benchmark_index(self) -> BenchmarkIndex:
        return BenchmarkIndex.build(self.load_benchmarks(self.experiment_ids()))

    # ------------------------------------------------------------------ writing

    def start_benchmark_run(
        self, tags: Mapping[str, str], run_name: str | None = None, start_time: int | None = None
    ) -> tuple[str, int]:
        """Create the RUNNING benchmark run with all its tags in one call; return its id and start time
        (``start_time`` in epoch ms, default this machine's clock; workers pass Redis's shared clock)."""
        experiment = self.benchmark_experiment_id()
        with self._store("creating a benchmark run"):
            run = self.client.create_run(
                experiment, start_time=start_time or _now_ms(), tags=dict(tags), run_name=run_name
            )
        if run.info.artifact_uri and not self.client.tracking_uri.startswith("databricks"):
            if len(self._artifact_uris) >= MAX_OPEN_RUNS:  # runs ended elsewhere: forget the oldest
                self._artifact_uris.pop(next(iter(self._artifact_uris)))
            self._artifact_uris[run.info.run_id] = run.info.artifact_uri
        return run.info.run_id, run.info.start_time

    def record_results(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        summary: Mapping[str, Any],
        filename: str,
        extra_tags: Mapping[str, str] | None = None,
    ) -> None:
        """Metrics and extra tags in one ``log_batch``, the summary as a JSON artifact. The run stays RUNNING."""
        now = _now_ms()
        metric_list = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        tag_list = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in (extra_tags or {}).items()]
        with self._store(f"logging the results of run {run_id}"):
            for start in range(0, max(len(metric_list), 1), MAX_BATCH_METRICS):
                chunk = metric_list[start : start + MAX_BATCH_METRICS]
                self.client.log_batch(run_id, metrics=chunk, tags=tag_list if start == 0 else [])
            self._log_json(run_id, summary, filename)

    def _log_json(self, run_id: str, document: Mapping[str, Any], filename: str) -> None:
        """``document`` as the run's artifact ``filename``: written straight to the artifact location of a run
        this tracker created, else through ``log_dict`` (which reads the run to find its location)."""
        uri = self._artifact_uris.get(run_id)
        if uri is None:
            self.client.log_dict(run_id, dict(document), filename)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory(prefix="podium-artifact-") as folder:
            local = Path(folder) / filename
            local.write_text(json.dumps(document, indent=2))
            get_artifact_repository(uri, tracking_uri=self.client.tracking_uri).log_artifact(str(local))

    def finish_run(self, run_id: str) -> None:
        with self._store(f"marking run {run_id} FINISHED"):
            self.client.set_terminated(run_id, "FINISHED", end_time=_now_ms())
        self._artifact_uris.pop(run_id, None)

    def fail_run(self, run_id: str, reason: str, status: str = "FAILED", strict: bool = False) -> None:
        """End a run FAILED (or KILLED) with the reason as a tag. A store hiccup is logged, or raised as a
        ``TrackingError`` when ``strict`` (the caller must not go on as if the run were ended)."""
        self._artifact_uris.pop(run_id, None)
        try:
            self.client.set_tag(run_id, self.tags.benchmark.error, reason[:MAX_TAG_VALUE])
            self.client.set_terminated(run_id, status, end_time=_now_ms())
        except STORE_ERRORS as exc:
            if strict:
                raise TrackingError(
                    f"marking run {run_id} {status} in the MLflow store {self.uri} failed: {_why(exc)}"
                ) from exc
            log.error("Could not mark run %s %s (%s): %s", run_id, status, reason, _why(exc))

    def log_benchmark_run(
        self,
        tags: Mapping[str, str],
        metrics: Mapping[str, float],
        summary: Mapping[str, Any],
        filename: str = "benchmark.json",
        run_name: str | None = None,
    ) -> str:
        """Create, fill and finish a benchmark run (the path without a lock)."""
        run_id, _ = self.start_benchmark_run(tags, run_name)
        try:
            self.record_results(run_id, metrics, summary, filename)
        except BaseException as exc:
            self.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
        self.finish_run(run_id)
        return run_id


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


def warn_fallback(found: ExistingBenchmark, champion: Champion) -> None:
    log.warning(
        "Benchmark run %s has no benchmark_key tag; it was matched to trial %s of study %s by "
        "trial_key_hash + study_key_hash (legacy fallback). Its config is unknown: re-run with "
        "run.mode=force_new to measure under the current benchmark_key.",
        found.run_id,
        champion.trial_key_hash,
        champion.study_key_hash,
    )


def warn_no_result(lookup: Lookup, identity: BenchmarkIdentity, result_metrics: Sequence[str]) -> None:
    """Name the FINISHED runs that matched a benchmark but hold no result, when nothing else answered."""
    if lookup.found is None and lookup.no_result:
        log.warning(
            "Benchmark run(s) %s are FINISHED for benchmark_key %s but hold none or not all of its result "
            "metrics (%s): done means a result, so they do not count and the benchmark is measured again.",
            ", ".join(lookup.no_result),
            identity.key[:16],
            ", ".join(result_metrics),
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
