"""Faults from the field (issue "Reliability in the field"): a frozen leader, a Redis restart with AOF, memory
pressure, a locked store, forged input and skewed clocks. Real redis-server, real `podium worker` and
`podium aggregator` processes, a real MLflow sqlite store; exact counts, nothing lost.
"""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient

from podium.core.config import BenchmarkConfig
from podium.core.messages import BenchmarkResult, BestModelUpdate
from podium.core.records import Champion
from podium.core.validation import parse_model
from podium.producers.enqueue import build_request, enqueue_benchmark
from podium.streams import keys
from tests.pipeline_helpers import Pipeline, select_best, trial_run, wait_published
from tests.servers import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]
STUDY = "f" * 64


def synthetic(service_ms: float = 0.0, iterations: int = 1) -> BenchmarkConfig:
    bench = {
        "backend": "synthetic",
        "synthetic_service_ms": service_ms,
        "iterations": iterations,
        "warmup_iterations": 0,
        "stability": {"max_windows": 2, "agree_windows": 2, "max_ratio": 1000.0},
    }
    return parse_model(BenchmarkConfig, {"benchmarking": bench}, "field")


def champion(i: int, prefix: str = "f") -> Champion:
    return Champion(f"{prefix}{i:031d}", STUDY, f"{i:064x}", "d", "e")


def statuses(store: str) -> dict[str, collections.Counter]:
    """Benchmark runs per benchmark_key, counted by status."""
    client = MlflowClient(store)
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for run in client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'", max_results=5000
    ):
        out[run.data.tags["benchmark_key"]][run.info.status] += 1
    return out


def dead_letters(r: redis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(keys.DEAD_LETTERS_STREAM)]


def published_equals_select(p: Pipeline, store: str, config_hash: str, timeout: float = 120) -> BestModelUpdate:
    expected = select_best(store, p.env, STUDY, config_hash)
    latest = wait_published(p.redis, STUDY, config_hash, expected["best"], timeout=timeout)
    assert latest is not None and latest.best is not None
    assert latest.best.model_dump(exclude={"composite_score"}) == {
        k: v for k, v in expected["best"].items() if k != "composite_score"
    }
    return latest


@pytest.fixture
def store(tmp_path: Path, _migrated_db: Path) -> str:
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def pipeline(tmp_path: Path, store: str):
    p = Pipeline(tmp_path / "pipeline", store, lock_ttl_ms=2000, max_attempts=4, retry_backoff_s=0.2)
    try:
        yield p
    finally:
        p.stop()


# ---------------------------------------------------------------- forged and broken input


def test_forged_and_broken_input_is_dead_lettered_and_changes_nothing(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    trial_run(client, STUDY, champion(1).trial_key_hash, 0.9)
    worker = pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.start("aggregator", "aggregator")
    pipeline.wait_workers(1)
    cfg = synthetic()
    first = enqueue_benchmark(pipeline.app, champion(1), cfg)
    measured = pipeline.app.AsyncResult(first.task_id).get(timeout=120)
    assert measured["status"] == "measured"
    config_hash = build_request(champion(1), cfg).identity.config_hash
    before = published_equals_select(pipeline, store, config_hash)

    real = json.loads(pipeline.redis.xrange(keys.BENCHMARKS_STREAM)[0][1]["data"])
    forged = {
        "a run MLflow never saw": {**real, "run_id": "f" * 32, "metrics": {"latency_batch_1_ms": 0.001}},
        "a key that is not the run's": {**real, "benchmark_key": "0" * 64},
        "a trial that is not the run's": {**real, "trial_key_hash": "9" * 64},
    }
    for event in forged.values():
        pipeline.redis.xadd(keys.BENCHMARKS_STREAM, {"data": BenchmarkResult.model_validate(event).encode()})
    for value in ("-1000", "NaN"):  # not finite or negative: refused when decoded
        text = json.dumps({**real, "metrics": {"latency_batch_1_ms": 0.0}}).replace("0.0}", f"{value}}}")
        pipeline.redis.xadd(keys.BENCHMARKS_STREAM, {"data": text})
    queue = keys.queue("cpu")
    pipeline.redis.lpush(queue, "this is not JSON {")
    pipeline.redis.lpush(queue, json.dumps({"not": "an envelope"}))
    unknown = pipeline.app.send_task("podium.no-such-task", args=[1], queue=queue)
    wrong = pipeline.app.send_task(keys.BENCHMARK_TASK, args=[1, 2], queue=queue)
    assert pipeline.app.AsyncResult(wrong.id).get(timeout=60)["status"] == "rejected"
    after = enqueue_benchmark(pipeline.app, champion(2), cfg)  # queued behind the garbage: still served
    assert pipeline.app.AsyncResult(after.task_id).get(timeout=120)["status"] == "measured"

    assert wait_until(lambda: len(dead_letters(pipeline.redis)) >= 9, timeout=60), "\n".join(
        f"{f['source']}: {f['error'][:160]}" for f in dead_letters(pipeline.redis)
    )
    letters = dead_letters(pipeline.redis)
    by_source = collections.Counter(f["source"] for f in letters)
    assert by_source == {"result": 5, "queue": 2, "request": 2}, letters
    errors = " | ".join(f["error"] for f in letters)
    for expected in (
        "no run " + "f" * 32,
        "benchmark_key '" + "0" * 64,
        "trial_key_hash '" + "9" * 64,
        "greater than or equal to 0",
        "finite number",
        "is not a message",
        "unknown task 'podium.no-such-task'",
        "takes one request object",
    ):
        assert expected in errors, (expected, errors)
    assert any("this is not JSON {" in f["payload"] for f in letters if f["source"] == "queue")
    assert worker.proc.poll() is None  # the worker lives on
    assert pipeline.app.AsyncResult(unknown.id).state == "FAILURE"  # Celery's own answer, now also a dead letter
    runs = statuses(store)
    assert runs[first.benchmark_key] == {"FINISHED": 1} and runs[after.benchmark_key] == {"FINISHED": 1}
    latest = published_equals_select(pipeline, store, config_hash)
    assert (latest.best and latest.best.latency_ms == before.best.latency_ms) or latest.best.trial_key_hash != "f"
    history = [json.loads(f["data"]) for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
    assert {h["best"]["benchmark_run_id"] for h in history if h["best"]} == {measured["run_id"]}
