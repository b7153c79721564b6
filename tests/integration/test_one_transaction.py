"""A benchmark run's results and FINISHED are one transaction on a database store: one commit, all or nothing
(real sqlite stores, and PostgreSQL used directly)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from podium.core.tags import TagsRegistry
from podium.errors import TrackingError, TransactionSplit
from podium.tracking.one_transaction import database_store, log_batch, one_transaction
from podium.tracking.tracker import MlflowTracking

METRICS = {"latency_batch_1_ms": 1.5, "latency_batch_1_p50_ms": 1.4, "latency_batch_8_ms": 6.0}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(
    request: pytest.FixtureRequest, sqlite_store_uri: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A sqlite store, or the session's PostgreSQL database emptied (its artifacts under this test's folder)."""
    if request.param == "sqlite":
        return sqlite_store_uri
    server = request.getfixturevalue("tracking_server")
    server.postgres.empty()
    monkeypatch.chdir(tmp_path)  # a store opened from a database URI keeps its artifacts in ./mlruns
    return server.postgres.uri


def commits_during(tracking: MlflowTracking, action) -> int:
    """How many transactions the store's engine committed while ``action`` ran."""
    engine = tracking.client._tracking_client.store.engine
    commits = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    sqlalchemy.event.listen(engine, "commit", listener)
    try:
        action()
    finally:
        sqlalchemy.event.remove(engine, "commit", listener)
    return len(commits)


def test_results_with_finished_are_one_commit_and_the_run_holds_them_all(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry(), create=True)
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    tags = {tracking.tags.benchmark.device: "cpu", tracking.tags.benchmark.stability: "b1:stable"}

    def write() -> None:
        tracking.record_results(run_id, METRICS, {"p50": 1.4}, "benchmark.json", tags, finish=True)

    assert commits_during(tracking, write) == 1  # through MLflow's log_batch and set_terminated: four
    run = tracking.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time
    assert run.data.metrics == METRICS
    assert {k: run.data.tags[k] for k in tags} == tags
    assert [a.path for a in tracking.client.list_artifacts(run_id)] == ["benchmark.json"]


def test_results_without_finish_leave_the_run_running(sqlite_store_uri: str) -> None:
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry())
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    tracking.record_results(run_id, METRICS, {}, "benchmark.json")
    run = tracking.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.metrics == METRICS


def test_a_failing_call_in_the_transaction_leaves_nothing_of_it(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry(), create=True)
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    store = database_store(tracking.client)
    assert store is not None
    with pytest.raises(MlflowException), one_transaction(store, commit=True) as joined:
        joined.log_batch(run_id, [Metric("latency_batch_1_ms", 1.5, 0, 0)], [], [RunTag("written", "no")])
        joined.update_run_info("no-such-run", RunStatus.FINISHED, 0, None)
    run = tracking.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.metrics == {} and "written" not in run.data.tags


def test_a_deleted_run_refuses_its_results_and_keeps_what_it_held(sqlite_store_uri: str) -> None:
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry())
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    tracking.record_results(run_id, METRICS, {}, "benchmark.json", finish=True)
    tracking.client.delete_run(run_id)  # a run deleted meanwhile: MLflow refuses writes to it
    with pytest.raises(TrackingError, match=f"logging the results of run {run_id} and marking it FINISHED"):
        tracking.record_results(run_id, {"latency_batch_1_ms": 9.0}, {}, "benchmark.json", finish=True)
    assert tracking.client.get_run(run_id).data.metrics == METRICS


def test_a_run_another_worker_ended_is_not_finished_again(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry(), create=True)
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    tracking.fail_run(run_id, "its commit did not complete", status="KILLED")  # the worker that took over
    with pytest.raises(TrackingError, match="is KILLED, not RUNNING"):
        tracking.record_results(run_id, METRICS, {}, "benchmark.json", finish=True)
    run = tracking.client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.metrics == {}


def test_a_commit_the_database_refuses_leaves_nothing_written_and_the_store_unlocked(sqlite_store_uri: str) -> None:
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry())
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    engine = tracking.client._tracking_client.store.engine

    def refuse(conn) -> None:  # as sqlite does when a reader holds the file past the busy timeout
        raise OSError("database is locked")

    sqlalchemy.event.listen(engine, "commit", refuse)
    try:
        with pytest.raises(TrackingError, match="database is locked"):
            tracking.record_results(run_id, METRICS, {}, "benchmark.json", finish=True)
    finally:
        sqlalchemy.event.remove(engine, "commit", refuse)
    # another process (a training script) can write at once: the refused transaction holds no lock
    path = sqlite_store_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=0) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE experiments SET name = name")
    run = tracking.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.metrics == {}
    tracking.record_results(run_id, METRICS, {}, "benchmark.json", finish=True)  # and the next write commits
    assert tracking.client.get_run(run_id).info.status == "FINISHED"


def test_a_store_call_that_rolls_back_and_retries_is_made_again_one_by_one(database_uri: str) -> None:
    """MLflow takes a metric the run already holds by rolling back and going on: inside one transaction that
    would commit the rest piecemeal; it is refused, nothing of it is written, and MLflow's calls go again."""
    tracking = MlflowTracking.connect(database_uri, TagsRegistry(), create=True)
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    same = Metric("latency_batch_1_ms", 1.5, 1000, 0)
    tracking.client.log_batch(run_id, metrics=[same])
    store = database_store(tracking.client)
    assert store is not None
    with pytest.raises(TransactionSplit), one_transaction(store, commit=True) as joined:
        joined.log_batch(run_id, [same, Metric("latency_batch_8_ms", 6.0, 1000, 0)], [], [RunTag("written", "no")])
    assert tracking.client.get_run(run_id).data.metrics == {"latency_batch_1_ms": 1.5}  # nothing of it

    log_batch(
        tracking.client, run_id, [same, Metric("latency_batch_8_ms", 6.0, 1000, 0)], [RunTag("t", "v")], finish=True
    )
    run = tracking.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["t"] == "v"
    assert run.data.metrics == {"latency_batch_1_ms": 1.5, "latency_batch_8_ms": 6.0}


@pytest.mark.parametrize("count", [998, 999, 1000, 1001])
def test_a_thousand_metrics_with_tags_are_cut_into_batches_mlflow_takes(sqlite_store_uri: str, count: int) -> None:
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry())
    run_id, _ = tracking.start_benchmark_run({"code.benchmark.key": "k"})
    metrics = {f"m{i}": float(i) for i in range(count)}
    tracking.record_results(run_id, metrics, {}, "benchmark.json", {"a": "1", "b": "2"}, finish=True)
    run = tracking.client.get_run(run_id)
    assert run.info.status == "FINISHED" and len(run.data.metrics) == count
