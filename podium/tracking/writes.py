"""A benchmark run's writes to an MLflow store, in as few commits as the store allows: ``create_run`` with all
its tags; the artifact; then the metrics, the tags only measuring tells and FINISHED in one transaction. (The
same writes compiled ahead of a worker's first request, and rolled back: :mod:`podium.tracking.warm_writes`.)"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.parse
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, RunTag

from podium.core.bounded import Bounded
from podium.errors import TrackingError
from podium.tracking.one_transaction import log_batch
from podium.tracking.store_errors import STORE_ERRORS, now_ms, why

if TYPE_CHECKING:
    from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

MAX_TAG_VALUE = 5000
#: Artifact locations remembered for runs not yet ended (a worker has one or two at a time).
MAX_OPEN_RUNS = 256


class BenchmarkWrites:
    """Start, fill and end the benchmark runs of one tracker."""

    def __init__(self, tracker: MlflowTracking) -> None:
        self.tracker = tracker
        #: run id -> artifact URI of the benchmark runs this tracker created and has not ended yet: their
        #: benchmark.json goes straight to that location (MLflow's client would read the run back to learn it)
        #: runs ended elsewhere are forgotten, oldest first
        self._artifact_uris: Bounded[str, str] = Bounded(MAX_OPEN_RUNS)

    def start_benchmark_run(
        self, tags: Mapping[str, str], run_name: str | None = None, start_time: int | None = None
    ) -> tuple[str, int]:
        """Create the RUNNING benchmark run with all its tags in one call; return its id and start time
        (``start_time`` in epoch ms, default this machine's clock; workers pass Redis's shared clock)."""
        t = self.tracker
        experiment = t.benchmark_experiment_id()
        with t.in_store("creating a benchmark run"):
            run = t.client.create_run(experiment, start_time=start_time or now_ms(), tags=dict(tags), run_name=run_name)
        if run.info.artifact_uri and not t.client.tracking_uri.startswith("databricks"):
            self._artifact_uris.remember(run.info.run_id, run.info.artifact_uri)
        return str(run.info.run_id), int(run.info.start_time)

    def record_summary(self, run_id: str, summary: Mapping[str, Any], filename: str) -> None:
        """The summary as the run's JSON artifact ``filename``."""
        with self.tracker.in_store(f"writing {filename} of run {run_id}"):
            self._log_json(run_id, summary, filename)

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
        """The summary as a JSON artifact (None: written already), then the metrics and extra tags; with ``finish``
        the run is marked FINISHED with them, else it stays RUNNING. On a database store the metrics, tags and
        status are one transaction (one commit, where MLflow's ``log_batch`` and ``set_terminated`` make four): a
        FINISHED run always holds its figures, and a failure leaves none of them."""
        client, now = self.tracker.client, now_ms()
        metric_list = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        tag_list = [RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in (extra_tags or {}).items()]
        doing = f"logging the results of run {run_id}" + (" and marking it FINISHED" if finish else "")
        with self.tracker.in_store(doing):
            if summary is not None:
                self._log_json(run_id, summary, filename)
            log_batch(client, run_id, metric_list, tag_list, finish=finish)
        if finish:
            self._artifact_uris.pop(run_id, None)

    def record_text(self, run_id: str, text: str, filename: str) -> None:
        """``text`` as the run's artifact ``filename`` (a Triton ``config.pbtxt``)."""
        with self.tracker.in_store(f"writing {filename} of run {run_id}"):
            self._log_text(run_id, text, filename)

    def _log_json(self, run_id: str, document: Mapping[str, Any], filename: str) -> None:
        self._log_text(run_id, json.dumps(document, indent=2), filename)

    def _log_text(self, run_id: str, text: str, filename: str) -> None:
        """``text`` as the run's artifact ``filename``: written straight to the artifact location of a run this
        tracker created, else through ``log_text`` (which reads the run to find its location)."""
        client = self.tracker.client
        uri = self._artifact_uris.get(run_id)
        if uri is None:
            client.log_text(run_id, text, filename)
            return
        if urllib.parse.urlparse(uri).scheme in ("", "file"):  # a folder of this machine: written in place
            from mlflow.utils.file_utils import local_file_uri_to_path

            here = Path(local_file_uri_to_path(uri))  # type: ignore[no-untyped-call]  # MLflow leaves it unannotated
            here.mkdir(parents=True, exist_ok=True)
            part = here / f".{filename}.{uuid.uuid4().hex}"  # made with the umask's mode, as MLflow's copy
            try:
                part.write_text(text)
                os.replace(part, here / filename)  # whole or absent, as MLflow's own copy
            finally:
                part.unlink(missing_ok=True)  # left only when the write or the rename failed
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory(prefix="podium-artifact-") as folder:
            local = Path(folder) / filename
            local.write_text(text)
            repository = get_artifact_repository(uri, tracking_uri=client.tracking_uri)
            repository.log_artifact(str(local))  # type: ignore[no-untyped-call]  # MLflow leaves it unannotated

    def finish_run(self, run_id: str) -> None:
        with self.tracker.in_store(f"marking run {run_id} FINISHED"):
            self.tracker.client.set_terminated(run_id, "FINISHED", end_time=now_ms())
        self._artifact_uris.pop(run_id, None)

    def fail_run(self, run_id: str, reason: str, status: str = "FAILED", strict: bool = False) -> None:
        """End a run FAILED (or KILLED) with the reason as a tag. A store hiccup is logged, or raised as a
        ``TrackingError`` when ``strict`` (the caller must not go on as if the run were ended)."""
        t = self.tracker
        self._artifact_uris.pop(run_id, None)
        try:
            t.client.set_tag(run_id, t.tags.benchmark.error, reason[:MAX_TAG_VALUE])
            t.client.set_terminated(run_id, status, end_time=now_ms())
        except STORE_ERRORS as exc:
            if strict:
                raise TrackingError(
                    f"marking run {run_id} {status} in the MLflow store {t.uri} failed: {why(exc)}"
                ) from exc
            log.error("Could not mark run %s %s (%s): %s", run_id, status, reason, why(exc))

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
            self.record_results(run_id, metrics, summary, filename, finish=True)
        except BaseException as exc:
            self.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
        return run_id
