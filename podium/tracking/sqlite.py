"""Opening a sqlite MLflow store safely when several processes open it at once."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient


def open_sqlite(tracking_uri: str, db: Path) -> MlflowClient:
    """A client on a sqlite store, opened under an exclusive file lock: MLflow creates or migrates the
    schema when the client is built, which is not safe when several processes (workers, the aggregator,
    a producer) open a fresh store at once."""
    import fcntl

    with open(db.with_name(db.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)
            return client
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
