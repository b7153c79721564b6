"""Connection settings from ``PODIUM_*`` environment variables, built once at an entrypoint."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
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


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
