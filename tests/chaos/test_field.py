"""Faults from the field (issue "Reliability in the field"): a frozen leader, a Redis restart with AOF, memory
pressure, a locked store, forged input and skewed clocks. Real redis-server, real `podium worker` and
`podium aggregator` processes, a real MLflow sqlite store; exact counts, nothing lost.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient

from podium.coordination import keys
from podium.coordination.connection import connect
from podium.core.config import BenchmarkConfig
from podium.core.messages import BenchmarkResult, BestModelUpdate
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.errors import BrokerUnavailable, TrackingError
from podium.measurement.lifecycle import Measured
from podium.producers.enqueue import build_request, enqueue_benchmark
from podium.testing import StoreLockedFencing
from podium.tracking.tracker import MlflowTracking
from podium.workers.execute import WorkerDeps, execute
from tests.pipeline_helpers import (
    CONFIG,
    Pipeline,
    candidate_fields,
    committed_result,
    runs_by_key,
    select_best,
    synthetic_config,
    trial_run,
    wait_published,
)
from tests.servers import start_redis, unavailable, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]
STUDY = "f" * 64


def synthetic(service_ms: float = 0.0, iterations: int = 1, mode: str = "reuse_if_exists") -> BenchmarkConfig:
    return synthetic_config(service_ms, iterations, mode)


def champion(i: int, prefix: str = "f") -> Champion:
    return Champion(f"{prefix}{i:031d}", STUDY, f"{i:064x}", "d", "e")


def with_trials(store: str, count: int) -> None:
    """Trial runs for champions 0..count-1 (objectives 0.80, 0.81, ...), so their benchmarks are candidates."""
    client = MlflowClient(store)
    for k in range(count):
        trial_run(client, STUDY, champion(k).trial_key_hash, 0.80 + k / 100)


def dead_letters(r: redis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(keys.DEAD_LETTERS_STREAM)]


def published_equals_select(p: Pipeline, store: str, config_hash: str, timeout: float = 120) -> BestModelUpdate:
    expected = select_best(store, p.env, STUDY, config_hash)
    latest = wait_published(p.redis, STUDY, config_hash, expected["best"], timeout=timeout)
    logs = "\n".join(f"--- {name}\n{proc.log()[-3000:]}" for name, proc in p.processes.items() if "agg" in name)
    assert latest is not None and latest.best is not None, logs
    assert latest.best.model_dump(exclude={"composite_score"}) == candidate_fields(expected["best"])
    return latest


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
    runs = runs_by_key(store)
    assert runs[first.benchmark_key] == {"FINISHED": 1} and runs[after.benchmark_key] == {"FINISHED": 1}
    latest = published_equals_select(pipeline, store, config_hash)
    assert (latest.best and latest.best.latency_ms == before.best.latency_ms) or latest.best.trial_key_hash != "f"
    history = [json.loads(f["data"]) for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
    assert {h["best"]["benchmark_run_id"] for h in history if h["best"]} == {measured["run_id"]}


# ---------------------------------------------------------------- a frozen leader


def _pending_of(r: redis.Redis, consumer: str) -> int:
    return sum(
        c["pending"] for c in r.xinfo_consumers(keys.BENCHMARKS_STREAM, keys.AGGREGATOR_GROUP) if c["name"] == consumer
    )


def test_frozen_leader_publishes_nothing_stale(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    t1, t2 = "1" * 64, "2" * 64
    trial_run(client, STUDY, t1, 0.90)
    trial_run(client, STUDY, t2, 0.95)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    committed_result(tracking, pipeline.redis, STUDY, t1, 10.0, champion_run="c1a", config_hash=CONFIG)
    a = pipeline.start("agg-a", "aggregator", "--name", "agg-a")
    assert wait_until(lambda: "Published seq" in a.log(), timeout=60), a.log()
    b = pipeline.start("agg-b", "aggregator", "--name", "agg-b")
    assert wait_until(lambda: "podium aggregator:" in b.log(), timeout=60), b.log()

    for attempt in range(5):  # freeze A while it waits in XREADGROUP, so Redis delivers the next entry to it
        # the run is in MLflow first: between the freeze and the event nothing but the XADD (A's read blocks
        # for 1 s at a time; a slow write after the freeze outlived it, and then B took the lead from A)
        event = committed_result(tracking, None, STUDY, t1, 9.0, champion_run=f"c1-{attempt}", config_hash=CONFIG)
        os.kill(a.pid, signal.SIGSTOP)
        entry = pipeline.redis.xadd(keys.BENCHMARKS_STREAM, {"data": event.encode()})
        # Redis hands the entry to a blocked reader while it serves the XADD, so this is known at once; A's
        # 2 s lease is not at risk yet
        if wait_until(lambda: _pending_of(pipeline.redis, "agg-a") == 1, timeout=0.5):
            break
        os.kill(a.pid, signal.SIGCONT)  # it was between two reads: it takes the entry on its next, try again
        assert wait_until(lambda e=entry: _group(pipeline.redis)["last-delivered-id"] == e, timeout=30)
        assert wait_until(lambda: _group(pipeline.redis)["pending"] == 0, timeout=30)
    else:
        pytest.fail("could not freeze the leader with an entry in hand")
    try:
        assert wait_until(lambda: "Leading as agg-b" in b.log(), timeout=60), b.log()  # past A's 2 s lease
        committed_result(tracking, pipeline.redis, STUDY, t2, 5.0, champion_run="c2", config_hash=CONFIG)
        latest = published_equals_select(pipeline, store, CONFIG)
        assert latest.best and latest.best.trial_key_hash == t2
        history = pipeline.redis.xlen(keys.BEST_UPDATES_STREAM)
    finally:
        os.kill(a.pid, signal.SIGCONT)  # A resumes with T1's run in hand and a view without T2's
    assert wait_until(lambda: "Lost the lead" in a.log(), timeout=60), a.log()
    updates = [json.loads(f["data"]) for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
    assert len(updates) == history, (updates[history:], a.log()[-3000:], b.log()[-3000:])  # A published nothing
    assert published_equals_select(pipeline, store, CONFIG).best.trial_key_hash == t2
    seqs = [json.loads(f["data"])["seq"] for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
    assert seqs == sorted(set(seqs))
    assert _group(pipeline.redis)["pending"] == 0  # every entry acknowledged, by the leader


def _group(r: redis.Redis) -> dict:
    return next(g for g in r.xinfo_groups(keys.BENCHMARKS_STREAM) if g["name"] == keys.AGGREGATOR_GROUP)


# ---------------------------------------------------------------- skewed clocks

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_a_worker_with_a_skewed_clock_writes_true_times(pipeline: Pipeline, store: str) -> None:
    if not LIBFAKETIME.exists():
        unavailable("libfaketime is not installed (apt-get install -y faketime)")
    client = MlflowClient(store)
    trial_run(client, STUDY, champion(1).trial_key_hash, 0.9)
    aggregator = pipeline.start("aggregator", "aggregator")
    skewed_env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+2h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    skewed = pipeline.start("skewed", "worker", "--target", "cpu", "--loglevel", "WARNING", env=skewed_env)
    pipeline.wait_workers(1)
    cfg = synthetic(mode="force_new")
    runs = []
    for n in range(13):  # the first by the worker two hours ahead, then twelve by a true one
        if n == 1:
            skewed.stop()
            pipeline.start("true", "worker", "--target", "cpu", "--loglevel", "WARNING")
            pipeline.wait_workers(1)
        before = time.time() * 1000
        sent = enqueue_benchmark(pipeline.app, champion(1), cfg)
        result = pipeline.app.AsyncResult(sent.task_id).get(timeout=120)
        assert result["status"] == "measured"
        run = client.get_run(result["run_id"])
        assert before - 1000 <= run.info.start_time <= time.time() * 1000 + 1000, (n, run.info.start_time - before)
        runs.append(run)
    events = [BenchmarkResult.model_validate_json(f["data"]) for _, f in pipeline.redis.xrange(keys.BENCHMARKS_STREAM)]
    assert [e.start_time for e in events] == [r.info.start_time for r in runs]  # the event says what MLflow holds
    latest = published_equals_select(pipeline, store, events[0].config_hash)
    assert latest.best and latest.best.benchmark_runs_count == 10  # the window holds the newest ten, none pinned
    assert "starts +" not in aggregator.log()  # no start time needed correcting


# ---------------------------------------------------------------- Redis restarted (AOF on) mid-benchmark


def _in_flight(r: redis.Redis) -> list[dict[str, str]]:
    beats = [r.hgetall(k) for k in r.scan_iter(keys.HEARTBEAT_PATTERN)]
    return [b for b in beats if b and b.get("phase") in ("warmup", "measure")]


@pytest.mark.slow
def test_redis_restarted_with_aof_mid_benchmark_loses_nothing(tmp_path: Path, store: str) -> None:
    p = Pipeline(
        tmp_path / "pipeline",
        store,
        redis_args=["--appendonly", "yes", "--appendfsync", "always"],
        lock_ttl_ms=2000,
        max_attempts=4,
        retry_backoff_s=0.2,
    )
    try:
        with_trials(store, 8)
        aggregator = p.start("aggregator", "aggregator")
        for i in range(2):
            p.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING")
        p.wait_workers(2)
        cfg = synthetic(service_ms=50, iterations=30)  # ~1.5 s per benchmark
        sent = [enqueue_benchmark(p.app, champion(k, "a"), cfg) for k in range(6)]
        assert wait_until(lambda: len(_in_flight(p.redis)) == 2, timeout=60)
        refused = []

        def send_during_outage() -> None:
            for k in (6, 7):  # a producer sends twice while Redis is away
                with pytest.raises(BrokerUnavailable, match="it was not enqueued") as info:
                    enqueue_benchmark(p.app, champion(k, "a"), cfg, retries=0)
                refused.append((k, info.value))

        p.restart_redis(between=send_during_outage)
        assert [k for k, _ in refused] == [6, 7]
        assert not any("must be restarted" in str(exc) for _, exc in refused)  # it need not be: see below
        sent += [enqueue_benchmark(p.app, champion(k, "a"), cfg) for k in (6, 7)]  # the same producer, again
        results = [p.app.AsyncResult(s.task_id).get(timeout=240) for s in sent]
        assert collections.Counter(r["status"] for r in results) == {"measured": 8}, results
        runs = runs_by_key(store)
        assert all(runs[s.benchmark_key]["FINISHED"] == 1 for s in sent), runs
        interrupted = sum(runs[s.benchmark_key]["FAILED"] + runs[s.benchmark_key]["KILLED"] for s in sent)
        assert interrupted <= 2 and set().union(*map(set, runs.values())) <= {"FINISHED", "FAILED", "KILLED"}
        assert dead_letters(p.redis) == []
        assert p.redis.llen(keys.queue("cpu")) == 0
        assert p.redis.xlen(keys.BENCHMARKS_STREAM) == 8
        published_equals_select(p, store, build_request(champion(0), cfg).identity.config_hash)
        assert aggregator.proc.poll() is None  # it rode out the restart
    finally:
        p.stop()


# ---------------------------------------------------------------- memory pressure


def test_an_evicting_redis_is_refused_unless_accepted(tmp_path: Path, store: str) -> None:
    p = Pipeline(tmp_path / "pipeline", store, redis_args=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
    try:
        worker = p.start("worker", "worker", "--target", "cpu")
        aggregator = p.start("aggregator", "aggregator")
        assert worker.proc.wait(60) == 2 and aggregator.proc.wait(60) == 2
        for proc in (worker, aggregator):
            assert "maxmemory-policy allkeys-lru" in proc.log() and "PODIUM_ACCEPT_REDIS_EVICTION" in proc.log()
        status = p.run_cli("status", "--json")
        assert "maxmemory-policy allkeys-lru" in json.loads(status)["redis"]["problems"][0]
        accepted = p.start("accepted", "worker", "--target", "cpu", env={"PODIUM_ACCEPT_REDIS_EVICTION": "true"})
        p.wait_workers(1)
        assert accepted.proc.poll() is None and "accepted by PODIUM_ACCEPT_REDIS_EVICTION" in accepted.log()
    finally:
        p.stop()


@pytest.mark.slow
def test_out_of_memory_is_retried_and_never_kills_a_worker(tmp_path: Path, store: str) -> None:
    p = Pipeline(tmp_path / "pipeline", store, redis_args=["--maxmemory-policy", "noeviction"], retry_backoff_s=0.2)
    try:
        with_trials(store, 30)
        aggregator = p.start("aggregator", "aggregator")
        workers = [p.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING") for i in range(2)]
        p.wait_workers(2)
        cfg = synthetic(service_ms=20, iterations=10)  # ~0.2 s per benchmark
        sent = [enqueue_benchmark(p.app, champion(k, "m"), cfg) for k in range(30)]
        assert wait_until(lambda: p.redis.xlen(keys.BENCHMARKS_STREAM) >= 4, timeout=60)
        p.redis.config_set("maxmemory", 1)  # every write that needs memory now fails with OOM
        # a worker met it: Redis's refusal in podium's retry path, or the transport / result store waiting
        met = ("used memory > 'maxmemory'", "Redis has no memory to")
        assert wait_until(lambda: any(m in w.log() for w in workers for m in met), timeout=60)
        p.redis.config_set("maxmemory", 0)  # memory freed
        results = [p.app.AsyncResult(s.task_id).get(timeout=300) for s in sent]
        assert collections.Counter(r["status"] for r in results) == {"measured": 30}
        assert all(w.proc.poll() is None for w in workers), [(w.proc.poll(), w.log()[-6000:]) for w in workers]
        runs = runs_by_key(store)
        assert all(runs[s.benchmark_key]["FINISHED"] == 1 for s in sent), runs
        assert dead_letters(p.redis) == []
        assert p.redis.xlen(keys.BENCHMARKS_STREAM) == 30
        published_equals_select(p, store, build_request(champion(0), cfg).identity.config_hash)
        assert aggregator.proc.poll() is None
    finally:
        p.stop()


# ---------------------------------------------------------------- the MLflow store locked


@pytest.fixture
def store_lock(store: str):
    """Take / release an exclusive lock on the sqlite store from another connection (a backup, a migration)."""
    holder = sqlite3.connect(store.removeprefix("sqlite:///"), timeout=30, isolation_level=None)

    class Lock:
        held = False

        def take(self) -> None:
            holder.execute("BEGIN EXCLUSIVE")
            self.held = True

        def release(self) -> None:
            if self.held:
                holder.execute("COMMIT")
                self.held = False

    lock = Lock()
    try:
        yield lock
    finally:
        lock.release()
        holder.close()


def test_a_store_locked_at_the_first_task_loses_no_request(pipeline: Pipeline, store: str, store_lock) -> None:
    with_trials(store, 12)
    store_lock.take()  # before the worker (and the aggregator) have ever opened the store
    pipeline.start("aggregator", "aggregator")
    worker = pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.wait_workers(1)
    cfg = synthetic()
    sent = [enqueue_benchmark(pipeline.app, champion(k, "l"), cfg) for k in range(12)]
    assert wait_until(lambda: "database is locked" in worker.log(), timeout=120), worker.log()[-3000:]
    store_lock.release()
    results = [pipeline.app.AsyncResult(s.task_id).get(timeout=300) for s in sent]
    assert collections.Counter(r["status"] for r in results) == {"measured": 12}, results
    runs = runs_by_key(store)
    assert all(runs[s.benchmark_key]["FINISHED"] == 1 for s in sent), runs
    assert set().union(*map(set, runs.values())) <= {"FINISHED", "FAILED"}
    assert dead_letters(pipeline.redis) == []
    assert worker.proc.poll() is None
    published_equals_select(pipeline, store, build_request(champion(0), cfg).identity.config_hash)


@pytest.mark.slow
def test_a_store_locked_at_the_commit_step_leaves_redis_and_mlflow_agreeing(
    tmp_path: Path, store: str, store_lock
) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        r = connect(server.url)
        tracking = MlflowTracking.connect(store, TagsRegistry())
        request = build_request(champion(1, "c"), synthetic())
        key = request.benchmark_key

        def measure(req, progress) -> Measured:
            return Measured({"latency_batch_1_ms": 1.5}, {}, "test-device")

        locked = WorkerDeps(
            r, tracking, measure, "worker-a", lock_ttl_ms=5000, fencing=StoreLockedFencing(store_lock.take)
        )
        with pytest.raises(TrackingError, match="database is locked"):
            execute(request, locked)  # marking the run FINISHED fails: the store is locked
        store_lock.release()
        (stuck,) = tracking.client.search_runs([tracking.benchmark_experiment_id()], "attributes.status = 'RUNNING'")
        assert r.get(keys.done(key)) == f"pending:{stuck.info.run_id}"  # not an answer anyone reuses
        assert r.xlen(keys.BENCHMARKS_STREAM) == 0  # and nothing was published

        retried = execute(request, WorkerDeps(r, tracking, measure, "worker-b", lock_ttl_ms=5000))
        assert retried.status == "measured" and retried.run_id != stuck.info.run_id
        ended = tracking.client.get_run(stuck.info.run_id)
        assert ended.info.status == "KILLED" and "did not complete" in ended.data.tags["code.benchmark.error"]
        assert r.get(keys.done(key)) == retried.run_id
        (event,) = [BenchmarkResult.model_validate_json(f["data"]) for _, f in r.xrange(keys.BENCHMARKS_STREAM)]
        assert event.run_id == retried.run_id
        again = execute(request, WorkerDeps(r, tracking, measure, "worker-c", lock_ttl_ms=5000))
        assert (again.status, again.run_id, again.via) == ("reused", retried.run_id, "done_marker")
        finished = tracking.client.search_runs([tracking.benchmark_experiment_id()], "attributes.status = 'FINISHED'")
        assert [run.info.run_id for run in finished] == [retried.run_id]
        r.close()
    finally:
        server.stop()
