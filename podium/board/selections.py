"""The candidates of every study, read from MLflow by the same steps as ``podium select --json``, held in one
cache that a background thread reloads only when an update arrives (never per page, never on a timer).

The tracker reads a store as a whole, so one reload serves every study that changed meanwhile; pages of those
studies are told (``refreshed``) once it is done. Each reload also reads, in one more look-up, the candidates'
benchmark runs (their load levels, for the latency-vs-throughput curves) and, when runs are linked to an MLflow
UI, their trial runs (the experiment of each run)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.core.config import SelectionConfig
from podium.errors import PodiumError

log = logging.getLogger(__name__)

#: Delay before another try after a failed load (the store away, locked, not created yet).
RETRY_S = 5.0


@dataclass(frozen=True)
class RunSeen:
    """What the board keeps of a candidate's run: its experiment (for links) and its load curve, if any."""

    experiment_id: str
    load: dict[str, Any] | None = None


@dataclass(frozen=True)
class Loaded:
    """What one read of the store gives."""

    documents: dict[str, list[dict[str, Any]]]
    config: SelectionConfig
    runs: dict[str, RunSeen] = field(default_factory=dict)
    #: benchmark config hash -> the p99 budget of its load levels (known for the board's own benchmark.yaml)
    sla_p99_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """One load: each study's ``podium select --json`` documents (one per config), and the config it used."""

    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    config: SelectionConfig | None = None
    loaded_at: float | None = None
    load_s: float | None = None
    error: str | None = None
    runs: dict[str, RunSeen] = field(default_factory=dict)
    sla_p99_ms: dict[str, float] = field(default_factory=dict)
    #: each study's last seq the board had taken when this read began: the evidence of those updates is in it (the
    #: aggregator publishes only what it found in the store); a later update's may not be
    seqs_read: dict[str, int] = field(default_factory=dict)


class MlflowSelections:
    """Loads every selection of a store as ``podium select`` does (same config, tags, clock, labels)."""

    def __init__(
        self,
        tracking_uri: str,
        config_dir: Path,
        config: Path | None = None,
        experiments: Sequence[str] | None = None,
        clock_ms: tuple[int, int] = (300_000, 3_600_000),
        trial_runs: bool = False,
    ):
        self.tracking_uri = tracking_uri
        #: read the trial runs too (their experiments, for links to the MLflow UI)
        self.trial_runs = trial_runs
        self.config_dir = config_dir
        self.config_path = config
        self.experiments = list(experiments or [])
        self.clock_ms = clock_ms
        self._tracking: Any = None

    def __call__(self) -> Loaded:
        from podium.core.verification import Clock
        from podium.settings.files import load_selection_config, load_tags
        from podium.tracking.selected import select_store
        from podium.tracking.tracker import MlflowTracking

        cfg = load_selection_config(self.config_path, self.config_dir)
        if self._tracking is None or self._tracking.objective_metric != cfg.objective.metric:
            registry = load_tags(None, self.config_dir)
            self._tracking = MlflowTracking.connect(
                self.tracking_uri, registry, objective_metric=cfg.objective.metric, create=False
            )
        documents: dict[str, list[dict[str, Any]]] = {}
        for doc in select_store(self._tracking, self.experiments, cfg, Clock(*self.clock_ms)).documents():
            documents.setdefault(doc["study_key_hash"], []).append(doc)
        return Loaded(documents, cfg, self._runs(documents), self._sla())

    def _runs(self, documents: dict[str, list[dict[str, Any]]]) -> dict[str, RunSeen]:
        """Every candidate's benchmark run (and trial run, when linked), read in one look-up."""
        from podium.board.load_curves import load_curve
        from podium.tracking.labels import runs_named

        wanted: set[str] = set()
        for docs in documents.values():
            for doc in docs:
                for c in doc.get("candidates", []) + doc.get("excluded", []):
                    wanted.add(c["benchmark_run_id"])
                    if self.trial_runs:
                        wanted.add(c["trial_run_id"])
        if not wanted:
            return {}
        return {
            run_id: RunSeen(str(run.info.experiment_id), load_curve(run.data.metrics))
            for run_id, run in runs_named(self._tracking, wanted).items()
        }

    def _sla(self) -> dict[str, float]:
        """The p99 budget of the board's own benchmark.yaml, for the scope measured with it."""
        from podium.settings.files import config_hash_of, load_benchmark_config

        try:
            bench = load_benchmark_config(None, self.config_dir)
            budget = bench.benchmarking.load.sla_p99_ms
            return {} if budget is None else {config_hash_of(bench): budget}
        except (PodiumError, OSError) as exc:
            log.debug("No p99 budget from %s (%s).", self.config_dir, exc)
            return {}


class SelectionCache:
    """The latest :class:`Snapshot`, reloaded on a thread of its own when :meth:`invalidate` asks; each reload
    reports the studies it was asked for to ``on_refreshed`` (None: every study, the first load)."""

    def __init__(
        self,
        load: Callable[[], Loaded],
        on_refreshed: Callable[[set[str] | None], None] | None = None,
        seqs: Callable[[], dict[str, int]] | None = None,
    ):
        self._load = load
        self.on_refreshed = on_refreshed
        #: each study's last seq taken from the channel (the feed's), noted as each read begins
        self.seqs = seqs
        self.snapshot = Snapshot()
        self._dirty: set[str] | None = None  # None: everything (the first load)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()

    def start(self) -> None:
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="podium-board-selections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def invalidate(self, study: str) -> None:
        with self._lock:
            if self._dirty is not None:
                self._dirty.add(study)
        self._wake.set()

    def documents(self, study: str) -> list[dict[str, Any]]:
        return self.snapshot.documents.get(study, [])

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                asked, self._dirty = self._dirty, set()
            started = time.monotonic()
            seqs_read = self.seqs() if self.seqs is not None else {}
            try:
                loaded = self._load()
            except Exception as exc:  # the store away, locked, half-written: never the end of this thread
                why = exc if isinstance(exc, (PodiumError, OSError)) else f"{type(exc).__name__}: {exc}"
                log.warning("Could not read the selections from MLflow (%s); trying again in %.0f s.", why, RETRY_S)
                self.snapshot = Snapshot(
                    self.snapshot.documents,
                    self.snapshot.config,
                    self.snapshot.loaded_at,
                    self.snapshot.load_s,
                    str(exc),
                    self.snapshot.runs,
                    self.snapshot.sla_p99_ms,
                    self.snapshot.seqs_read,
                )
                with self._lock:
                    self._dirty = None if asked is None or self._dirty is None else self._dirty | asked
                self._stop.wait(RETRY_S)
                self._wake.set()
                continue
            self.snapshot = Snapshot(
                loaded.documents,
                loaded.config,
                time.time(),
                round(time.monotonic() - started, 3),
                runs=loaded.runs,
                sla_p99_ms=loaded.sla_p99_ms,
                seqs_read=seqs_read,
            )
            self.loaded.set()
            if self.on_refreshed is not None:
                self.on_refreshed(asked)
