"""Shared fixtures of the fault suites: a fresh copy of the migrated sqlite store, a pipeline on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.pipeline_helpers import Pipeline


@pytest.fixture
def store(tmp_path: Path, _migrated_db: Path) -> str:
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def pipeline(tmp_path: Path, store: str):
    """A real redis-server (its processes started by each test) with short locks, six attempts, fast retries."""
    p = Pipeline(tmp_path / "pipeline", store, lock_ttl_ms=2000, max_attempts=6, retry_backoff_s=0.2)
    try:
        yield p
    finally:
        p.stop()
