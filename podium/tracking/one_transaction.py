"""MLflow's store calls joined into one database transaction, committed or rolled back as one.

MLflow's SQLAlchemy store opens a session, and commits, once per part of a call: a ``log_batch`` with metrics
and tags is two commits (each a journal sync on sqlite, ~3 ms here). Calls made on :func:`one_transaction`'s
store join a single transaction on one connection instead: their own commits go no further
(``join_transaction_mode="rollback_only"``), and the transaction is committed, or rolled back, at the end. A
failing call inside rolls the whole transaction back, so nothing of it is half written. Stores reached over HTTP
have no database here: :func:`database_store` says so with None, and the caller takes MLflow's own path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy.orm
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus, RunTag

from podium.tracking.store_errors import now_ms

if TYPE_CHECKING:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

#: MLflow accepts at most this many metrics in one ``log_batch``.
MAX_BATCH_METRICS = 1000


def database_store(client: MlflowClient) -> SqlAlchemyStore | None:
    """The database store behind ``client``; None for a store reached over HTTP (or any other kind)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store  # MLflow's own store object: its engine and statement cache
    return store if isinstance(store, SqlAlchemyStore) else None


@contextmanager
def one_transaction(store: SqlAlchemyStore, *, commit: bool) -> Iterator[SqlAlchemyStore]:
    """A copy of ``store`` (same engine, so the same statement cache) whose sessions all join one transaction;
    committed when the block ends without an exception and ``commit`` is true, else rolled back."""
    from mlflow.store.db.utils import _get_managed_session_maker

    connection = store.engine.connect()
    transaction = connection.begin()
    joined = copy.copy(store)
    sessions = sqlalchemy.orm.sessionmaker(bind=connection, join_transaction_mode="rollback_only")
    joined.ManagedSessionMaker = _get_managed_session_maker(sessions, store.db_type)
    try:
        yield joined
        if commit:
            transaction.commit()
    finally:
        if transaction.is_active:  # not committed, or a failing call's session rolled it back already
            transaction.rollback()
        connection.close()


def log_batch(
    client: MlflowClient, run_id: str, metrics: list[Metric], tags: list[RunTag], *, finish: bool = False
) -> None:
    """``metrics`` and ``tags`` on run ``run_id`` and, with ``finish``, the run marked FINISHED: one transaction
    on a database store (all or nothing, one commit); MLflow's own calls one after another over HTTP, or for
    more metrics than one batch holds."""
    store = database_store(client)
    if store is not None and len(metrics) <= MAX_BATCH_METRICS:
        with one_transaction(store, commit=True) as joined:
            joined.log_batch(run_id, metrics, [], tags)
            if finish:
                joined.update_run_info(run_id, RunStatus.FINISHED, now_ms(), None)
        return
    for start in range(0, max(len(metrics), 1), MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH_METRICS], tags=tags if start == 0 else [])
    if finish:
        client.set_terminated(run_id, "FINISHED", end_time=now_ms())
