"""Opening a sqlite MLflow store safely when several processes open it at once."""

from __future__ import annotations

import contextlib
from pathlib import Path

from mlflow import MlflowClient

#: MLflow's tags table is keyed by (key, run): a search by tag value scans every run carrying the tag, so
#: the existence check grows with the store (16 ms at 12k runs). This index makes it a look-up (3 ms).
TAG_VALUE_INDEX = "CREATE INDEX IF NOT EXISTS podium_tags_key_value ON tags (key, value)"


def index_tag_values(db: Path) -> None:
    """Add the (key, value) index on tags to a sqlite store once (idempotent; MLflow ignores extra indexes)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        conn.execute(TAG_VALUE_INDEX)
        conn.commit()


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
            index_tag_values(db)
            return client
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
