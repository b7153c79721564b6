"""Is an MLflow store ready to be opened without writing to it?

MLflow's client creates and migrates a database store the moment it is built (``SqlAlchemyStore.__init__``:
tables, alembic upgrade, the Default experiment). Done by a podium worker that starts before the user's
training script writes its first run, that races the user's own MLflow call, and the user's script dies with
an alembic error. So no podium process builds a client on a database store until the store is complete: the
schema at MLflow's head revision and the Default experiment in place. Until then it waits, only reading.

A tracking server (``http(s)://``) creates its own store: it is always "ready" here (an outage is another
matter, handled where the store is used).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

#: Database URI schemes checked before a client is built (the ones MLflow migrates on open).
DATABASE_PREFIXES = ("sqlite:", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class StoreState:
    """``ready``, or why not (one line a log can carry)."""

    ready: bool
    why: str = ""


READY = StoreState(True)


@functools.cache
def head_revision() -> str:
    """MLflow's latest schema revision (read from its migration scripts once per process)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other URI or an in-memory database)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def schema_state(revision: str | None, has_default_experiment: bool, head: str) -> StoreState:
    """Pure: what the two facts read from a database say about it."""
    if revision is None:
        return StoreState(False, "it has no MLflow schema yet (being created?)")
    if revision != head:
        return StoreState(
            False,
            f"its schema is at revision {revision}, not MLflow's {head} (being migrated, or needs `mlflow db upgrade`)",
        )
    if not has_default_experiment:
        return StoreState(False, "its Default experiment is not created yet")
    return READY


def store_state(tracking_uri: str) -> StoreState:
    """Whether a client can be built on ``tracking_uri`` without creating or migrating anything; only reads."""
    if not tracking_uri.startswith(DATABASE_PREFIXES):
        return READY
    db = sqlite_path(tracking_uri)
    if tracking_uri.startswith("sqlite:"):
        if db is None:
            return READY  # in-memory: nothing to race with
        return _sqlite_state(db)
    return _database_state(tracking_uri)


def _sqlite_state(db: Path) -> StoreState:
    if not db.is_file():
        return StoreState(False, f"the file {db} does not exist yet")
    if db.stat().st_size == 0:
        return StoreState(False, f"{db} is an empty file, not an MLflow store (yet: being created?)")
    try:
        # mode=rw, not ro: never creates the file, and only reads, but may roll back the hot journal a writer
        # killed mid-transaction left (a read-only connection cannot, and would call the store unreadable until
        # the training's next write: forever, once the study is over)
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True, timeout=2)) as conn:
            revision = _one(conn, "SELECT version_num FROM alembic_version")
            default = _one(conn, "SELECT experiment_id FROM experiments WHERE experiment_id = 0") is not None
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return schema_state(None, False, head_revision())
        return StoreState(False, f"it cannot be read right now ({exc})")
    return schema_state(revision, default, head_revision())


def _one(conn: sqlite3.Connection, sql: str) -> str | None:
    row = conn.execute(sql).fetchone()
    return None if row is None else str(row[0])


def _database_state(database_uri: str) -> StoreState:
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_uri)
    try:
        with engine.connect() as conn:
            names = set(sqlalchemy.inspect(conn).get_table_names())
            if "alembic_version" not in names or "experiments" not in names:
                return schema_state(None, False, head_revision())
            revision = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
            default = conn.execute(sqlalchemy.text("SELECT experiment_id FROM experiments WHERE experiment_id = 0"))
            has_default = default.first() is not None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return StoreState(False, f"it cannot be reached right now ({str(exc).splitlines()[0][:200]})")
    finally:
        engine.dispose()
    return schema_state(None if revision is None else str(revision), has_default, head_revision())
