"""The streaming pipeline with real parts: redis-server, two `podium worker` processes (Celery prefork),
one `podium aggregator` process, a real MLflow sqlite store, the local PyTorch backend."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.broker.app import create_app
from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.messages import BestModelUpdate
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.enqueue import enqueue_benchmark
from podium.settings.env import PodiumSettings
from podium.settings.files import config_hash_of
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import (
    Pipeline,
    collect,
    finished_runs,
    next_update,
    select_best,
    trained,
    wait_published,
)
from tests.servers import wait_until

pytestmark = pytest.mark.server
STUDY = "e" * 64
FAST = {"iterations": 10, "warmup_iterations": 2, "max_length": 16, "stability": {"max_windows": 3}}


def config(**benchmarking) -> BenchmarkConfig:
    return parse_model(BenchmarkConfig, {"benchmarking": FAST | benchmarking}, "test")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _migrated_db: Path) -> str:
    import shutil

    folder = tmp_path_factory.mktemp("pipeline-store")
    shutil.copy(_migrated_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, store: str):
    p = Pipeline(tmp_path_factory.mktemp("pipeline"), store)
    try:
        p.start("worker-1", "worker", "--target", "cpu", "--loglevel", "WARNING")
        p.start("worker-2", "worker", "--target", "cpu", "--loglevel", "WARNING")
        p.start("aggregator", "aggregator")
        p.wait_workers(2)
        yield p
    finally:
        p.stop()


def test_twenty_identical_requests_measure_once(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    champion = trained(store, tmp_path, "1" * 64, 0.9)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    cfg = config()
    sent = [enqueue_benchmark(pipeline.app, tracking.champion(champion), cfg) for _ in range(20)]
    assert len({s.benchmark_key for s in sent}) == 1
    results = [pipeline.app.AsyncResult(s.task_id).get(timeout=180) for s in sent]
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["measured"] + ["reused"] * 19, results
    (run,) = finished_runs(store, sent[0].benchmark_key)
    assert {r["run_id"] for r in results} == {run.info.run_id}
    assert run.data.tags["code.benchmark.fencing_token"] == "1"
    assert pipeline.redis.get(keys.done(sent[0].benchmark_key)) == run.info.run_id
    assert pipeline.redis.llen(keys.queue("cpu")) == 0

    # a config change: a new key, a new run, both kept
    changed = enqueue_benchmark(pipeline.app, tracking.champion(champion), config(max_length=8))
    assert changed.benchmark_key != sent[0].benchmark_key
    assert pipeline.app.AsyncResult(changed.task_id).get(timeout=180)["status"] == "measured"
    assert len(finished_runs(store, changed.benchmark_key)) == 1
    assert len(finished_runs(store, sent[0].benchmark_key)) == 1


def test_late_subscriber_and_plain_redis_subscriber(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    tracking = MlflowTracking.connect(store, TagsRegistry())
    first = enqueue_benchmark(pipeline.app, tracking.champion(trained(store, tmp_path, "2" * 64, 0.5, 8)), config())
    pipeline.app.AsyncResult(first.task_id).get(timeout=180)
    assert wait_until(lambda: pipeline.redis.keys(f"{keys.best_channel(STUDY)}:*"), timeout=60)

    before = {  # the current best per config when the late joiner joins
        u.benchmark_config_hash: u.seq
        for u in map(
            BestModelUpdate.model_validate_json,
            pipeline.redis.mget(pipeline.redis.keys(f"{keys.best_channel(STUDY)}:*")),
        )
    }
    plain = pipeline.redis.pubsub()
    plain.subscribe(keys.best_channel(STUDY))
    stop, updates = threading.Event(), queue.Queue()
    collect(stop, pipeline.settings.redis_url, STUDY, updates)
    try:
        # the late joiner gets the current best first: never one older than the one current when it joined
        # (the aggregator may publish newer ones meanwhile), and a real published update, whole
        current = next_update(updates)
        assert current.seq >= before.get(current.benchmark_config_hash, 0)
        history = {
            u.seq: u
            for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)
            if (u := BestModelUpdate.model_validate_json(f["data"])).study_key_hash == STUDY
        }
        assert history[current.seq] == current
        # another trial arrives (a new candidate is always published): every later update comes, in order,
        # up to the selection `podium select` makes; plain SUBSCRIBE sees JSON
        better = trained(store, tmp_path, "3" * 64, 0.99, 4)
        sent = enqueue_benchmark(pipeline.app, tracking.champion(better), config())
        pipeline.app.AsyncResult(sent.task_id).get(timeout=180)
        expected = select_best(store, pipeline.env, STUDY, config_hash_of(config()))
        want = (expected["best"]["trial_key_hash"], expected["best"]["latency_ms"], len(expected["candidates"]))
        later = next_update(updates)
        while (later.best.trial_key_hash, later.best.latency_ms, later.candidates) != want:
            assert later.seq > current.seq
            current, later = later, next_update(updates)
        assert later.seq > current.seq
        deadline, message = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            message = plain.get_message(timeout=1.0)
            if message and message["type"] == "message":
                break
        assert message and json.loads(message["data"])["study_key_hash"] == STUDY
    finally:
        stop.set()
        plain.close()


def test_malformed_requests_and_events_are_dead_lettered(pipeline: Pipeline) -> None:
    before = pipeline.redis.xlen(keys.DEAD_LETTERS_STREAM)
    bad = pipeline.app.send_task(
        keys.BENCHMARK_TASK, args=[{"schema_version": 1, "benchmark_key": "nope"}], queue=keys.queue("cpu")
    )
    assert bad.get(timeout=60)["status"] == "rejected"
    pipeline.redis.xadd(keys.BENCHMARKS_STREAM, {"data": '{"schema_version": 1, "run_id": "x"}'})
    assert wait_until(lambda: pipeline.redis.xlen(keys.DEAD_LETTERS_STREAM) >= before + 2, timeout=30)
    entries = pipeline.redis.xrange(keys.DEAD_LETTERS_STREAM)[before:]
    assert {f["source"] for _, f in entries} == {"request", "result"}
    assert all("BenchmarkRequest" in f["error"] or "BenchmarkResult" in f["error"] for _, f in entries)


def test_the_app_decodes_json_and_refuses_a_pickle() -> None:
    """What a worker of this app does with an incoming body: kombu's loads with the app's accept list."""
    import pickle

    from kombu.exceptions import ContentDisallowed
    from kombu.serialization import dumps, loads, prepare_accept_content

    app = create_app(PodiumSettings(redis_url="redis://127.0.0.1:1/0"))
    accept = prepare_accept_content(app.conf.accept_content)  # as a worker of this app does
    content_type, encoding, body = dumps({"a": 1}, serializer=app.conf.task_serializer)
    assert loads(body, content_type, encoding, accept=accept) == {"a": 1}
    with pytest.raises(ContentDisallowed):
        loads(pickle.dumps(["ls"]), "application/x-python-serialize", "binary", accept=accept)
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late


def test_aggregator_killed_and_restarted_loses_and_double_counts_nothing(pipeline: Pipeline, store: str) -> None:
    from tests.pipeline_helpers import committed_result, trial_run

    study = "f" * 64
    client = MlflowClient(store)
    trials = [f"{i:064x}" for i in range(1, 7)]
    for i, t in enumerate(trials):
        trial_run(client, study, t, 0.80 + 0.02 * i)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    r = pipeline.redis
    for n in range(120):
        if n == 50:
            os.kill(pipeline.processes["aggregator"].pid, 9)  # mid-stream, no goodbye
        if n == 80:
            pipeline.processes["aggregator"].stop()
            pipeline.start("aggregator", "aggregator")
        t = trials[n % len(trials)]
        committed_result(tracking, r, study, t, 5.0 + (n * 7919 % 13), champion_run=f"champion-{t[-4:]}")

    expected = select_best(store, pipeline.env, study)
    latest = wait_published(r, study, "c" * 64, expected["best"], timeout=90)
    assert latest is not None and latest.best is not None
    best = expected["best"]
    assert (latest.best.trial_key_hash, latest.best.benchmark_key) == (best["trial_key_hash"], best["benchmark_key"])
    assert latest.best.latency_ms == best["latency_ms"] and latest.best.benchmark_runs_count == 10  # window 10
    seqs = [
        BestModelUpdate.model_validate_json(f["data"]).seq
        for _, f in r.xrange(keys.BEST_UPDATES_STREAM)
        if json.loads(f["data"])["study_key_hash"] == study
    ]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs


def test_status_json_reflects_a_running_benchmark(pipeline: Pipeline) -> None:
    from podium.core.records import Champion

    slow = config(
        backend="synthetic",
        synthetic_service_ms=50.0,
        iterations=20,
        warmup_iterations=0,
        stability={"max_windows": 3, "agree_windows": 3},
    )
    sent = enqueue_benchmark(pipeline.app, Champion("slow" + "0" * 28, "9" * 64, "8" * 64, "d", "e"), slow)
    beat = keys.heartbeat(sent.benchmark_key)
    assert wait_until(lambda: pipeline.redis.hget(beat, "phase") in ("warmup", "measure"), timeout=120)
    worker_pid = int(pipeline.redis.hget(beat, "worker").rsplit(":", 1)[-1])
    os.kill(worker_pid, signal.SIGSTOP)  # hold the benchmark where it is while podium status looks at it
    try:
        out = subprocess.run(
            [sys.executable, "-m", "podium", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=pipeline.env,
        )
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    running = [r for r in report["running"] if r["benchmark_key"] == sent.benchmark_key]
    (entry,) = running
    assert entry["phase"] in ("checking", "measuring", "warmup", "measure", "committing")
    assert entry["worker"] and entry["target"] == "cpu" and entry["heartbeat_age_s"] < 30
    assert "podium.cpu" in report["queues"] and report["aggregator"]["leader"] is True
    assert pipeline.app.AsyncResult(sent.task_id).get(timeout=120)["status"] == "measured"
    final = json.loads(
        subprocess.run(
            [sys.executable, "-m", "podium", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=pipeline.env,
        ).stdout
    )
    assert all(r["benchmark_key"] != sent.benchmark_key for r in final["running"])
    assert all(lock["benchmark_key"] != sent.benchmark_key for lock in final["stale_locks"])  # released


def test_workers_are_warm_before_their_first_request(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    """Each worker process announced itself ready with every runtime it serves warmed (torch, onnxruntime), and
    no request had to import a runtime: the first new model costs what any later one does."""
    ready = [pipeline.redis.hgetall(k) for k in pipeline.redis.scan_iter(match=keys.WORKER_PATTERN)]
    assert len(ready) >= 2, ready
    for worker in ready:
        assert "torchscript (torch " in worker["warmed"] and "onnx (onnxruntime " in worker["warmed"], worker
        assert "not warmed" not in worker["warmed"], worker
        assert worker["store"] == store
    tracking = MlflowTracking.connect(store, TagsRegistry())
    sent = enqueue_benchmark(pipeline.app, tracking.champion(trained(store, tmp_path, "6" * 64, 0.4, 6)), config())
    assert pipeline.app.AsyncResult(sent.task_id).get(timeout=180)["status"] == "measured"
    for name in ("worker-1", "worker-2"):
        whole_log = (pipeline.processes[name].folder / "server.log").read_text(errors="replace")
        assert "imported inside a task" not in whole_log


def test_a_request_from_another_store_is_refused_naming_both_stores(
    pipeline: Pipeline, store: str, tmp_path: Path
) -> None:
    """Training on one store, workers on another: the request is dead-lettered at once with one line naming
    both stores (it used to say "enqueued" and then fail in the wrong store)."""
    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    MlflowClient(other).search_experiments()  # a second store, made by its own training
    producer = MlflowTracking.connect(other, TagsRegistry())
    champion = producer.champion(trained(other, tmp_path, "7" * 64, 0.4, 6))
    sent = enqueue_benchmark(pipeline.app, champion, config(), store=producer.store_ref())
    outcome = pipeline.app.AsyncResult(sent.task_id).get(timeout=180)
    assert outcome["status"] == "dead_letter", outcome
    assert other in outcome["error"] and store in outcome["error"] and "PODIUM_TRACKING_URI" in outcome["error"]
    parked = [f for _, f in pipeline.redis.xrevrange(keys.DEAD_LETTERS_STREAM, count=20)]
    assert any(sent.request_id in f["payload"] and other in f["error"] for f in parked)
    status = json.loads(pipeline.run_cli("status", "--json"))
    assert any(other in d.get("error", "") for d in status["dead_letters"]["latest"])
