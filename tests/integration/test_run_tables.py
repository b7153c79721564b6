"""Runs read straight from MLflow's tables give what ``search_runs`` gives, on sqlite and on PostgreSQL."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag, ViewType

from podium.core.filters import run_id_in
from podium.core.tags import TagsRegistry
from podium.tracking.tables import RunTables, StoredRun
from podium.tracking.tracker import MlflowTracking


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, sqlite_store_uri: str) -> str:
    if request.param == "sqlite":
        return sqlite_store_uri
    server = request.getfixturevalue("tracking_server")
    server.postgres.empty()
    return server.postgres.uri


def write_runs(client: MlflowClient) -> tuple[list[str], list[str]]:
    """Runs in every state a forged or broken event may name; returns (experiment ids, run ids)."""
    exp = client.create_experiment("podium-benchmarks")
    other = client.create_experiment("elsewhere")
    ids = []
    for status, metrics in [
        ("FINISHED", {"latency_batch_1_ms": 3.5, "latency_batch_1_stable": 1.0}),
        ("RUNNING", {"latency_batch_1_ms": 2.0}),
        ("FAILED", {}),
        ("FINISHED", {"latency_batch_1_ms": math.nan, "latency_batch_8_p50_ms": 0.0}),
    ]:
        run = client.create_run(exp, start_time=1_700_000_000_000 + len(ids), tags={"benchmark_key": "k" * 64})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, 1_700_000_000_500, 0) for k, v in metrics.items()],
            tags=[RunTag("code.stage", "benchmark"), RunTag("note", "é ✓ " + "x" * 300)],
        )
        client.log_metric(run.info.run_id, "latency_batch_1_samples", 10.0, step=1)  # latest of two steps
        client.log_metric(run.info.run_id, "latency_batch_1_samples", 20.0, step=2)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status, end_time=1_700_000_001_000)
        ids.append(run.info.run_id)
    client.delete_run(ids[2])  # a deleted run is still found: ViewType.ALL
    outside = client.create_run(other).info.run_id  # not in the experiments asked for
    return [exp], [*ids, outside]


def comparable(run: StoredRun) -> tuple:
    metrics = {k: ("nan" if math.isnan(v) else v) for k, v in run.metrics.items()}
    return (run.run_id, run.status, run.start_time, run.lifecycle_stage, dict(run.tags), metrics)


def test_the_tables_give_what_search_runs_gives(database_uri: str) -> None:
    client = MlflowClient(tracking_uri=database_uri)
    experiments, ids = write_runs(client)
    searched = {
        r.info.run_id: r
        for r in client.search_runs(experiments, run_id_in(ids), run_view_type=ViewType.ALL, max_results=100)
    }
    tables = RunTables.for_uri(database_uri)
    assert tables is not None
    try:
        read = tables.runs([*ids, "0" * 32], experiments)
    finally:
        tables.close()
    assert set(read) == set(searched) == set(ids[:4])  # not the unknown id, not the run outside
    for run_id, run in read.items():
        assert comparable(run) == comparable(StoredRun.of(searched[run_id]))
    assert read[ids[0]].metrics["latency_batch_1_samples"] == 20.0
    assert read[ids[2]].lifecycle_stage == "deleted" and read[ids[1]].status == "RUNNING"
    assert read[ids[0]].tags["note"].startswith("é ✓ ")


def test_the_tracker_reads_tables_for_databases_and_search_runs_for_servers(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry())
    assert tracking.tables is not None
    client = tracking.client
    _, ids = write_runs(client)
    by_tables = tracking.run_facts(ids)
    tracking.tables = None  # the path a tracking server takes
    by_search = tracking.run_facts(ids)
    assert by_tables.keys() == by_search.keys() and len(by_tables) == 5  # the tracker reads every experiment
    for run_id, facts in by_tables.items():
        other = by_search[run_id]
        assert (facts.status, facts.champion_run_id, facts.key_version) == (
            other.status,
            other.champion_run_id,
            other.key_version,
        )
        assert (facts.record is None) == (other.record is None)
    assert RunTables.for_uri("http://127.0.0.1:5000") is None


def test_the_tagged_look_up_finds_what_search_runs_finds(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry())
    client = tracking.client
    experiments, ids = write_runs(client)  # runs 0 and 3 FINISHED with the key; 1 RUNNING; 2 FAILED, deleted
    key = "k" * 64
    assert tracking.tables is not None
    found = tracking.tables.finished_run_tagged("benchmark_key", key, experiments)
    (first, *_) = client.search_runs(experiments, f"tags.benchmark_key = '{key}' and status = 'FINISHED'")
    assert found == first.info.run_id == ids[3]  # the newest
    client.delete_run(ids[3])
    assert tracking.tables.finished_run_tagged("benchmark_key", key, experiments) == ids[0]
    assert tracking.tables.finished_run_tagged("benchmark_key", "0" * 64, experiments) is None
    assert tracking.tables.finished_run_tagged("benchmark_key", key, []) is None


def test_a_read_of_named_tags_and_metrics_gives_those_of_the_whole_run(database_uri: str) -> None:
    """The aggregator's check reads only the tags and metrics it uses: the same values as the whole run's, on
    the tables and on the path of a tracking server; names a run lacks are absent, none asked gives none."""
    tracking = MlflowTracking.connect(database_uri, TagsRegistry())
    _, ids = write_runs(tracking.client)
    tags, metrics = ("benchmark_key", "note", "no.such.tag"), ("latency_batch_1_ms", "latency_batch_1_samples", "x")
    whole = tracking.runs_by_id(ids)
    narrow = tracking.runs_by_id(ids, tags, metrics)
    tracking.tables = None  # the path a tracking server takes
    searched = tracking.runs_by_id(ids, tags, metrics)
    assert narrow.keys() == whole.keys() == searched.keys() and len(whole) == 5
    for run_id, run in whole.items():
        expected = run.only(tags, metrics)
        assert set(expected.tags) <= set(tags) and set(expected.metrics) <= set(metrics)
        assert comparable(narrow[run_id]) == comparable(expected) == comparable(searched[run_id])
    assert set(narrow[ids[0]].metrics) == {"latency_batch_1_ms", "latency_batch_1_samples"}
    assert math.isnan(narrow[ids[3]].metrics["latency_batch_1_ms"])
    tables = RunTables.for_uri(database_uri)
    assert tables is not None
    try:
        bare = tables.runs(ids, tracking.recent_experiment_ids(), tags=(), metrics=())
    finally:
        tables.close()
    assert len(bare) == 5 and all(not r.tags and not r.metrics for r in bare.values())


def test_the_active_experiments_are_what_search_experiments_lists(database_uri: str) -> None:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry())
    client = tracking.client
    kept = [client.create_experiment(name) for name in ("a", "b", "c")]
    deleted = kept.pop(1)
    client.delete_experiment(deleted)
    assert tracking.tables is not None
    listed = tracking.experiment_ids()  # from the tables
    tracking.tables = None
    searched = tracking.experiment_ids()
    assert sorted(listed, key=int) == sorted(searched, key=int) and set(kept) <= set(listed)
    assert deleted not in listed


def test_the_legacy_look_up_finds_what_search_runs_finds(database_uri: str) -> None:
    """A study has legacy runs when a FINISHED, active benchmark run of it lacks the key tag: the tables' one query
    answers as ``search_runs`` with ``IS NULL`` does, run by run through every state that must not count."""
    from podium.tracking.existence import legacy_filter

    tags = TagsRegistry()
    tracking = MlflowTracking.connect(database_uri, tags)
    client, tables = tracking.client, tracking.tables
    assert tables is not None
    exp = client.create_experiment("podium-benchmarks")
    study = tags.grouping.study_key_hash
    benchmark = {tags.stage.key: tags.stage.benchmark}

    def asked(experiments: list[str], name: str = "s" * 64) -> tuple[bool, bool]:
        by_search = len(client.search_runs(experiments, legacy_filter(tags, name), max_results=1)) > 0
        return tables.any_run_without({study: name} | benchmark, tags.benchmark.key, experiments), by_search

    def run(status: str, run_tags: dict[str, str]) -> str:
        run_id = client.create_run(exp, tags=run_tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    assert asked([exp]) == (False, False)  # nothing yet
    run("FINISHED", {study: "s" * 64} | benchmark | {tags.benchmark.key: "k" * 64})  # keyed: not legacy
    run("FINISHED", {study: "s" * 64, tags.stage.key: "refit"})  # a training run of the study
    run("RUNNING", {study: "s" * 64} | benchmark)  # not finished
    run("FAILED", {study: "s" * 64} | benchmark)
    run("FINISHED", {study: "o" * 64} | benchmark)  # another study's legacy run
    assert asked([exp]) == (False, False)
    assert asked([exp], "o" * 64) == (True, True)
    deleted = run("FINISHED", {study: "s" * 64} | benchmark)
    client.delete_run(deleted)  # deleted: not searched
    assert asked([exp]) == (False, False)
    run("FINISHED", {study: "s" * 64} | benchmark)  # the legacy run
    assert asked([exp]) == (True, True)
    assert asked([client.create_experiment("elsewhere")]) == (False, False)  # not in the experiments asked
    assert tables.any_run_without({}, tags.benchmark.key, [exp]) is False
