"""Values read from a real MLflow store, checked where they enter (issue 25, round 3): a run whose tags break a
rule is skipped by every read with one warning; the existence check counts a run only when it holds a result,
on the run tables (sqlite, PostgreSQL) and through ``search_runs`` (a tracking server's path)."""

from __future__ import annotations

import logging
import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from podium.core.existing import result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.core.verification import run_problem
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import CONFIG, result_tags, trial_run

STUDY, TRIAL = "s" * 64, "1" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, sqlite_store_uri: str) -> str:
    if request.param == "sqlite":
        return sqlite_store_uri
    server = request.getfixturevalue("tracking_server")
    server.postgres.empty()
    return server.postgres.uri


@pytest.fixture(params=["tables", "search_runs"])
def tracking(request: pytest.FixtureRequest, database_uri: str) -> MlflowTracking:
    tracking = MlflowTracking.connect(database_uri, TagsRegistry(), create=True)  # an emptied database too
    if request.param == "search_runs":  # what a tracking server gets: no tables to read
        tracking = MlflowTracking(tracking.client, tracking.tags)
    return tracking


def keyed_run(tracking: MlflowTracking, metrics: dict[str, float], champion: str = "champ") -> str:
    tags = result_tags(tracking, STUDY, TRIAL, champion, CONFIG)
    run_id, _ = tracking.start_benchmark_run(tags)
    if metrics:
        tracking.client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    tracking.finish_run(run_id)
    return run_id


def test_a_finished_run_with_the_key_but_no_result_is_not_an_answer(tracking: MlflowTracking, caplog) -> None:
    champion = Champion("champ", STUDY, TRIAL, "d", "e")
    identity = BenchmarkIdentity("champ", "d", "e", CONFIG)
    need = result_metrics([1, 8])
    empty = keyed_run(tracking, {})
    nan = keyed_run(tracking, {"latency_batch_1_ms": 2.0, "latency_batch_8_ms": math.nan})
    half = keyed_run(tracking, {"latency_batch_1_ms": 2.0, "latency_batch_1_p50_ms": 2.0})
    with caplog.at_level(logging.WARNING, "podium.tracking.tracker"):
        assert tracking.benchmark_exists(identity, champion, result_metrics=need) is None
    (warning,) = [r.getMessage() for r in caplog.records if "hold none or not all" in r.getMessage()]
    assert all(run in warning for run in (empty, nan, half)) and "latency_batch_8_ms" in warning
    good = keyed_run(tracking, {"latency_batch_1_ms": 2.0, "latency_batch_8_ms": 9.0})
    found = tracking.benchmark_exists(identity, champion, result_metrics=need)
    assert found is not None and (found.run_id, found.via) == (good, "benchmark_key")
    keyed_run(tracking, {})  # a newer empty run changes nothing: the run with a result answers
    assert tracking.benchmark_exists(identity, champion, result_metrics=need).run_id == good


def test_a_run_whose_tags_break_a_rule_is_skipped_by_every_read(sqlite_store_uri: str, caplog) -> None:
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry())
    client = MlflowClient(sqlite_store_uri)
    good_trial = trial_run(client, STUDY, TRIAL, 0.9)
    quoted_trial = trial_run(client, "o'brien", TRIAL, 0.8)
    long_fp = trial_run(client, STUDY, "2" * 64, 0.7)
    client.set_tag(long_fp, "code.fingerprint.data", "x" * 5000)
    good = keyed_run(tracking, {"latency_batch_1_ms": 2.0})
    legacy = result_tags(tracking, STUDY, TRIAL, "legacy", CONFIG) | {"code.grouping.study_key_hash": "o'brien"}
    del legacy["benchmark_key"]
    quoted_bench = tracking.log_benchmark_run(legacy, {"latency_batch_1_ms": 1.0}, {})
    ids = tracking.experiment_ids()
    with caplog.at_level(logging.WARNING, "podium.tracking.tracker"):
        for _ in range(2):  # read twice (a rebuild after a lost lead): warned once per run
            assert [r.run_id for r in tracking.load_trials(ids)] == [good_trial]
            assert [r.run_id for r in tracking.load_benchmarks(ids)] == [good]
            assert [c.run_id for c in tracking.load_champions(ids)] == [good_trial]
    skipped = [r.getMessage() for r in caplog.records if "the run is skipped" in r.getMessage()]
    assert len(skipped) == 3, skipped
    assert any(quoted_trial in m and "code.grouping.study_key_hash" in m and "o'brien" in m for m in skipped)
    assert any(long_fp in m and "code.fingerprint.data is 5000 characters long" in m for m in skipped)
    assert set(tracking.refused) == {quoted_trial, long_fp, quoted_bench}
    facts = tracking.run_facts([quoted_bench, good])  # the live check: the same rule, as a dead letter's reason
    assert "its tag code.grouping.study_key_hash may only hold" in run_problem(quoted_bench, facts[quoted_bench])
    assert run_problem(good, facts[good]) is None
