"""Shared fixtures. MLflow stores are real sqlite stores: migrated once per session, copied per test."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.core.tags import TagsRegistry
from podium.tracking.tracker import MlflowTracking

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations once
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return db


@pytest.fixture
def store_uri(_migrated_db: Path, tmp_path: Path) -> str:
    """A fresh, empty, real MLflow sqlite store for this test."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def client(store_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri)


@pytest.fixture
def tracking(store_uri: str) -> MlflowTracking:
    return MlflowTracking.connect(store_uri, TagsRegistry())
