"""The experiments of an MLflow store as the tracker sees them: the active ones (listed again at most every
``EXPERIMENTS_TTL_S`` for the hot existence check) and podium's own, created on first use."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from podium.errors import TrackingError

if TYPE_CHECKING:
    from podium.tracking.tracker import MlflowTracking

#: The list of active experiments is re-read at most this often by the existence check.
EXPERIMENTS_TTL_S = 10.0


class Experiments:
    """One tracker's experiments."""

    def __init__(self, tracker: MlflowTracking) -> None:
        self.tracker = tracker
        self._benchmark_id: str | None = None
        self._listed: tuple[float, list[str]] = (-1e9, [])

    def ids(self, names: Sequence[str] | None = None) -> list[str]:
        """Ids of the named experiments, or of every active one when ``names`` is empty."""
        t = self.tracker
        if not names and t.tables is not None:
            with t.in_store("listing the active experiments"):
                return t.tables.active_experiment_ids()
        with t.in_store("listing the experiments"):
            active = t.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50_000)
        if not names:
            return [e.experiment_id for e in active]
        by_name = {e.name: e.experiment_id for e in active}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise TrackingError(
                f"no active experiment named {', '.join(map(repr, missing))} in {t.uri}; "
                f"active experiments: {', '.join(sorted(by_name)) or 'none'}"
            )
        return [by_name[n] for n in names]

    def recent_ids(self) -> list[str]:
        """Active experiment ids for the hot existence check: podium's benchmark experiment always, the
        others re-listed at most every ``EXPERIMENTS_TTL_S`` (an experiment created elsewhere in the last
        few seconds is the only one not yet searched)."""
        at, ids = self._listed
        if time.monotonic() - at > EXPERIMENTS_TTL_S:
            ids = self.ids()
            self._listed = (time.monotonic(), ids)
        own = self.benchmark_id()
        return ids if own in ids else [*ids, own]

    def forget(self) -> None:
        """List the active experiments again at the next existence check (new ones may hold legacy runs)."""
        self._listed = (-1e9, [])

    def benchmark_id(self) -> str:
        """The experiment podium writes benchmark runs to, created on first use."""
        if self._benchmark_id is None:
            name = self.tracker.benchmark_experiment
            with self.tracker.in_store(f"opening the experiment {name!r}"):
                self._benchmark_id = self._get_or_create(name)
        return self._benchmark_id

    def find_benchmark(self) -> str | None:
        """The benchmark experiment's id when it exists (remembered), else None; only reads (a worker's warm-up)."""
        if self._benchmark_id is None:
            name = self.tracker.benchmark_experiment
            with self.tracker.in_store(f"looking up the experiment {name!r}"):
                exp = self.tracker.client.get_experiment_by_name(name)
            if exp is not None:
                self._benchmark_id = str(exp.experiment_id)
        return self._benchmark_id

    def _get_or_create(self, name: str) -> str:
        client = self.tracker.client
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        try:
            return str(client.create_experiment(name, artifact_location=self.default_artifact_location()))
        except MlflowException:  # created concurrently by another worker
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def default_artifact_location(self) -> str | None:
        """For a sqlite store, artifacts live in ``artifacts/`` beside the database file (not in ./mlruns)."""
        uri = str(self.tracker.client.tracking_uri)
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("artifacts").as_uri()
        return None
