"""Connection settings from ``PODIUM_*`` environment variables, built once at an entrypoint."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where podium keeps its embedded state (sqlite MLflow store, demo artifacts).
DEFAULT_HOME = Path(".podium")


class PodiumSettings(BaseSettings):
    """Where podium connects. Every field can be set as ``PODIUM_<FIELD>`` (e.g. ``PODIUM_REDIS_URL``)."""

    model_config = SettingsConfigDict(env_prefix="PODIUM_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    tracking_uri: str = Field(default_factory=lambda: f"sqlite:///{(DEFAULT_HOME / 'mlflow.db').resolve()}")
    #: Folder holding benchmark.yaml, best_model_selection.yaml and tags.yaml (missing files: defaults).
    config_dir: Path = Path("config")
    #: MLflow experiment that podium writes benchmark runs into.
    benchmark_experiment: str = "podium-benchmarks"
    #: Worker name written to ``code.benchmark.worker`` (defaults to host:pid).
    worker_name: str | None = None
    #: The longest a benchmark may run, in seconds. Celery's visibility timeout must exceed it.
    max_benchmark_s: int = Field(default=3600, gt=0)
    #: Celery/Redis visibility timeout: an unacked message older than this is redelivered (unset: the longest
    #: benchmark plus a margin, ``podium.broker.app.visibility_timeout``). A dead worker's messages come back
    #: sooner: the reaper requeues them once its liveness key expires (``PODIUM_WORKER_LIVENESS_S``).
    visibility_timeout_s: int | None = Field(default=None, gt=0)
    #: A worker's main process renews its liveness key this often x3; when it stops (SIGKILL, host lost), the
    #: other workers requeue the messages it held after this many seconds.
    worker_liveness_s: float = Field(default=30.0, gt=0)
    #: How long a request waits out an outage of the MLflow store or a full disk (retried with back-off, no
    #: attempt counted) before such failures count as attempts.
    store_outage_s: float = Field(default=600.0, ge=0)
    #: Benchmark lock TTL in ms (renewed by a watchdog every third of it).
    lock_ttl_ms: int = Field(default=30_000, ge=1000)
    #: Attempts at one request (crashes and failures) before it goes to the dead-letter stream.
    max_attempts: int = Field(default=3, ge=1)
    #: Port of the Prometheus /metrics endpoint of a worker or the aggregator (unset: none).
    metrics_port: int | None = None
    #: Where the aggregator writes selection reports on a new best (unset: no reports).
    report_dir: Path | None = None
    #: At most one report per study and config this often, in seconds.
    report_every_s: float = Field(default=60.0, ge=0)
    #: Registered model (name template with {study} and {config}) whose ``champion`` alias the aggregator
    #: points at each new best; unset: no alias.
    champion_model: str | None = None
    #: This worker's Triton server, ``host:port`` (HTTP or gRPC port, per ``benchmarking.protocol``). A worker
    #: setting, never a request's: the request says what to measure, the worker knows where.
    triton_url: str | None = None
    #: First retry delay after a failure, doubled per attempt.
    retry_backoff_s: float = Field(default=2.0, ge=0)
    #: How far a writer's clock may be off Redis's before the aggregator stops believing its start times.
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    #: Done markers and fencing counters expire after this many days (MLflow stays the truth: a key whose
    #: marker expired is answered from MLflow). 0: never.
    done_ttl_days: float = Field(default=90.0, ge=0)
    #: Start even when Redis may evict keys (``maxmemory-policy`` other than ``noeviction``): the operator
    #: accepts that queued requests and podium's keys can vanish under memory pressure.
    accept_redis_eviction: bool = False
    #: How often running workers and the aggregator read Redis's eviction policy again (one CONFIG GET), in
    #: seconds: a change to an evicting policy stops their intake until it is undone (or accepted above).
    redis_policy_check_s: float = Field(default=15.0, gt=0)
    #: After a benchmark, write its headline figures (p50/p99 per batch size, stability, the benchmark run id)
    #: back onto the run it measured as ``podium.*`` metrics and tags; false: leave training runs untouched.
    write_back: bool = True

    @field_validator("tracking_uri")
    @classmethod
    def _absolute_sqlite(cls, value: str) -> str:
        """A relative sqlite path is resolved once, here, against the directory the process started in: the
        resolved path is what every log line names and what a request carries."""
        return absolute_sqlite_uri(value)


def absolute_sqlite_uri(uri: str) -> str:
    """``sqlite:///relative/mlflow.db`` with its path made absolute (any other URI unchanged)."""
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:////"):
        return uri
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    if not path or path == ":memory:":
        return uri
    return f"sqlite:///{Path(path).resolve()}" + (f"?{query}" if query else "")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def worker_name() -> str:
    """``host:pid`` of this process, for the ``code.benchmark.worker`` tag and heartbeats."""
    return f"{os.uname().nodename}:{os.getpid()}"
