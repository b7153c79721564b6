"""The candidates of every study, read from MLflow by the same steps as ``podium select --json``, held in one
cache that a background thread reloads only when an update arrives (never per page, never on a timer).

The tracker reads a store as a whole, so one reload serves every study that changed meanwhile; pages of those
studies are told (``refreshed``) once it is done."""

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
class Snapshot:
    """One load: each study's ``podium select --json`` documents (one per config), and the config it used."""

    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    config: SelectionConfig | None = None
    loaded_at: float | None = None
    load_s: float | None = None
    error: str | None = None


class MlflowSelections:
    """Loads every selection of a store as ``podium select`` does (same config, tags, clock, labels)."""

    def __init__(
        self,
        tracking_uri: str,
        config_dir: Path,
        config: Path | None = None,
        experiments: Sequence[str] | None = None,
        clock_ms: tuple[int, int] = (300_000, 3_600_000),
    ):
        self.tracking_uri = tracking_uri
        self.config_dir = config_dir
        self.config_path = config
        self.experiments = list(experiments or [])
        self.clock_ms = clock_ms
        self._tracking: Any = None

    def __call__(self) -> tuple[dict[str, list[dict[str, Any]]], SelectionConfig]:
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
        return documents, cfg


class SelectionCache:
    """The latest :class:`Snapshot`, reloaded on a thread of its own when :meth:`invalidate` asks; each reload
    reports the studies it was asked for to ``on_refreshed`` (None: every study, the first load)."""

    def __init__(
        self,
        load: Callable[[], tuple[dict[str, list[dict[str, Any]]], SelectionConfig]],
        on_refreshed: Callable[[set[str] | None], None] | None = None,
    ):
        self._load = load
        self.on_refreshed = on_refreshed
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
            try:
                documents, cfg = self._load()
            except (PodiumError, OSError) as exc:
                log.warning("Could not read the selections from MLflow (%s); trying again in %.0f s.", exc, RETRY_S)
                self.snapshot = Snapshot(
                    self.snapshot.documents,
                    self.snapshot.config,
                    self.snapshot.loaded_at,
                    self.snapshot.load_s,
                    str(exc),
                )
                with self._lock:
                    self._dirty = None if asked is None or self._dirty is None else self._dirty | asked
                self._stop.wait(RETRY_S)
                self._wake.set()
                continue
            self.snapshot = Snapshot(documents, cfg, time.time(), round(time.monotonic() - started, 3))
            self.loaded.set()
            if self.on_refreshed is not None:
                self.on_refreshed(asked)
