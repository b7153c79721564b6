"""A worker's warm-up compiles MLflow's write statements and writes nothing (real sqlite stores)."""

from __future__ import annotations

import sqlite3

import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from sqlalchemy.engine.interfaces import CacheStats

from podium.tracking.warm_writes import warm_writes


def compiled_on_the_way(client: MlflowClient) -> list[str]:
    """The INSERT/UPDATE statements the engine compiled (cache misses) while ``client`` writes one run the way a
    benchmark does."""
    engine = client._tracking_client.store.engine
    missed: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and context.cache_hit is CacheStats.CACHE_MISS:
            missed.append(statement.split("(")[0].strip())

    sqlalchemy.event.listen(engine, "after_cursor_execute", seen)
    try:
        run = client.create_run("0", tags={f"tag.{i}": "v" for i in range(15)}, run_name="benchmark-x")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(f"latency_batch_{i}_ms", 1.0, 0, 0) for i in range(12)],
            tags=[RunTag("code.benchmark.stability", "b1:stable")],
        )
        client.set_terminated(run.info.run_id)
    finally:
        sqlalchemy.event.remove(engine, "after_cursor_execute", seen)
    return missed


def rows(db: str, table: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_the_first_write_after_the_warm_up_compiles_nothing_and_the_warm_up_wrote_nothing(
    sqlite_store_uri: str,
) -> None:
    client = MlflowClient(sqlite_store_uri)
    assert warm_writes(client, "0") is True
    db = sqlite_store_uri.removeprefix("sqlite:///")
    assert [rows(db, t) for t in ("runs", "tags", "metrics", "latest_metrics")] == [0, 0, 0, 0]
    assert compiled_on_the_way(client) == []
    assert rows(db, "runs") == 1  # the store takes writes as before: the warm-up left no lock behind


def test_without_the_warm_up_the_first_write_compiles_its_statements(sqlite_store_uri: str) -> None:
    """The control: what the warm-up saves is there to save."""
    missed = compiled_on_the_way(MlflowClient(sqlite_store_uri))
    assert any(s.startswith("INSERT INTO runs") for s in missed), missed
    assert any(s.startswith("UPDATE runs") for s in missed), missed


def test_a_store_over_http_is_skipped() -> None:
    client = MlflowClient("http://127.0.0.1:9")  # never contacted: a REST store compiles nothing locally
    assert warm_writes(client, "0") is False
