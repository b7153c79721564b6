"""MLflow's store calls joined into one database transaction, committed or rolled back as one.

MLflow's SQLAlchemy store opens a session, and commits, once per part of a call: a ``log_batch`` with metrics
and tags is two commits, ``set_terminated`` one more. Calls made on :func:`one_transaction`'s store join a single
transaction on one connection instead: their own commits go no further (``join_transaction_mode="rollback_only"``),
and the transaction is committed, or rolled back, at the end.

All or nothing, whatever fails:
- a call that raises rolls the whole transaction back;
- a call that rolls back and goes on (MLflow retries a duplicate metric or tag, or a deadlock, that way) would
  start a second transaction of its own: that is refused, the first is rolled back, and
  :class:`~podium.errors.TransactionSplit` says the calls may be made again one by one;
- a COMMIT the database refuses (sqlite: a reader held the file past the busy timeout) leaves the transaction
  open in the driver, with the file locked for every other process: the connection is discarded, never handed
  back to the pool, which ends the transaction.

Stores reached over HTTP have no database here: :func:`database_store` says so with None, and the caller takes
MLflow's own path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy
import sqlalchemy.orm
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus, RunTag

from podium.errors import TrackingError, TransactionSplit
from podium.tracking.store_errors import now_ms

if TYPE_CHECKING:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

#: What MLflow's store takes in one ``log_batch``: metrics, params and tags together, and tags alone.
MAX_BATCH_ITEMS = 1000
MAX_BATCH_TAGS = 100


def database_store(client: MlflowClient) -> SqlAlchemyStore | None:
    """The database store behind ``client``; None for a store reached over HTTP (or any other kind)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store  # MLflow's own store object: its engine and statement cache
    return store if isinstance(store, SqlAlchemyStore) else None


def batches(metrics: list[Metric], tags: list[RunTag]) -> list[tuple[list[Metric], list[RunTag]]]:
    """``metrics`` and ``tags`` cut into ``log_batch`` calls MLflow takes: at most 100 tags and 1000 items in
    each; one (maybe empty) call when there is nothing."""
    out: list[tuple[list[Metric], list[RunTag]]] = []
    tag_chunks = [tags[i : i + MAX_BATCH_TAGS] for i in range(0, len(tags), MAX_BATCH_TAGS)]
    rest = list(metrics)
    for chunk in tag_chunks:
        room = MAX_BATCH_ITEMS - len(chunk)
        out.append((rest[:room], chunk))
        rest = rest[room:]
    while rest or not out:
        out.append((rest[:MAX_BATCH_ITEMS], []))
        rest = rest[MAX_BATCH_ITEMS:]
    return out


@contextmanager
def one_transaction(store: SqlAlchemyStore, *, commit: bool) -> Iterator[SqlAlchemyStore]:
    """A copy of ``store`` (same engine, so the same statement cache) whose sessions all join one transaction;
    committed when the block ends without an exception and ``commit`` is true, else rolled back."""
    from mlflow.store.db.utils import _get_managed_session_maker

    connection = store.engine.connect()
    transaction = connection.begin()
    split: list[bool] = []

    def refuse_a_second(conn: sqlalchemy.Connection) -> None:
        split.append(True)
        raise TransactionSplit("a store call rolled the joined transaction back and went on")

    sqlalchemy.event.listen(connection, "begin", refuse_a_second)
    joined = copy.copy(store)
    sessions = sqlalchemy.orm.sessionmaker(bind=connection, join_transaction_mode="rollback_only")
    joined.ManagedSessionMaker = _get_managed_session_maker(sessions, store.db_type)
    try:
        yield joined
        if split:  # MLflow caught what the refusal raised (a retry that gave up): still nothing is written
            raise TransactionSplit("a store call rolled the joined transaction back")
        if commit:
            transaction.commit()
    except BaseException as exc:
        connection.invalidate()  # closes the driver's connection: whatever it still held open is rolled back
        if split and not isinstance(exc, TransactionSplit):
            raise TransactionSplit(f"a store call rolled the joined transaction back ({exc})") from exc
        raise
    finally:
        if not connection.invalidated and transaction.is_active:
            transaction.rollback()
        connection.close()


def log_batch(
    client: MlflowClient, run_id: str, metrics: list[Metric], tags: list[RunTag], *, finish: bool = False
) -> None:
    """``metrics`` and ``tags`` on run ``run_id`` and, with ``finish``, the run marked FINISHED: one transaction
    on a database store (all or nothing, one commit; finishing a run that is no longer RUNNING, because another
    worker ended it, is refused and writes nothing); MLflow's own calls one after another over HTTP, or when
    MLflow's retries split the transaction."""
    store = database_store(client)
    if store is not None:
        try:
            with one_transaction(store, commit=True) as joined:
                for some_metrics, some_tags in batches(metrics, tags):
                    joined.log_batch(run_id, some_metrics, [], some_tags)
                if finish:
                    _refuse_unless_running(joined, run_id)
                    joined.update_run_info(run_id, RunStatus.FINISHED, now_ms(), None)
            return
        except TransactionSplit:
            pass  # rolled back whole: MLflow's calls one by one, which retry as MLflow means them to
    for some_metrics, some_tags in batches(metrics, tags):
        client.log_batch(run_id, metrics=some_metrics, tags=some_tags)
    if finish:
        client.set_terminated(run_id, "FINISHED", end_time=now_ms())


def _refuse_unless_running(joined: SqlAlchemyStore, run_id: str) -> None:
    """Read after the transaction's first write (sqlite then holds the file's write lock: nobody can end the run
    between this read and the commit)."""
    from mlflow.store.tracking.dbmodels.models import SqlRun

    with joined.ManagedSessionMaker() as session:
        status = session.query(SqlRun.status).filter(SqlRun.run_uuid == run_id).scalar()
    if status != "RUNNING":
        raise TrackingError(
            f"run {run_id} is {status}, not RUNNING: something else ended it (a worker that took over the "
            "benchmark), so its results are not written"
        )
