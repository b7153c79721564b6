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


@pytest.hookimpl(trylast=True)  # after the terminal reporter is there
def pytest_configure(config: pytest.Config) -> None:
    from tests.progress import register

    register(config)


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # runs the migrations once
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return db


@pytest.fixture
def sqlite_store_uri(_migrated_db: Path, tmp_path: Path) -> str:
    """A fresh, empty, real MLflow sqlite store for this test."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store_uri(sqlite_store_uri: str) -> str:
    """The store a test uses (a module may parametrize it over sqlite and the tracking server)."""
    return sqlite_store_uri


@pytest.fixture
def client(store_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri)


@pytest.fixture
def tracking(store_uri: str) -> MlflowTracking:
    return MlflowTracking.connect(store_uri, TagsRegistry())


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server`` on PostgreSQL for the session (started only when a test asks for it)."""
    from tests.tracking_server import start_tracking_server

    server = start_tracking_server(tmp_path_factory.mktemp("tracking-server"))
    yield server
    server.stop_all()


@pytest.fixture
def server_store_uri(tracking_server) -> str:
    """The tracking server's URI over an emptied store (a fresh store for this test)."""
    tracking_server.postgres.empty()
    return tracking_server.uri
