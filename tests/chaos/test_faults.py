"""Fault scenarios (issue "Reliability proof"): real redis-server, real worker processes, real MLflow.

Each is bounded in time and count, uses only 127.0.0.1, and asserts exact outcomes.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from mlflow import MlflowClient

from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.messages import BestModelUpdate
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.errors import BrokerUnavailable, LockLost
from podium.measurement.lifecycle import Measured
from podium.producers.enqueue import build_request, enqueue_benchmark
from podium.testing import StalledFencing
from podium.tracking.tracker import MlflowTracking
from podium.workers.execute import WorkerDeps, execute
from podium.workers.sweeper import sweep
from tests.pipeline_helpers import (
    Pipeline,
    bulk_results,
    candidate_fields,
    collect,
    committed_result,
    runs_by_key,
    select_best,
    synthetic_config,
    trial_run,
    wait_published,
)
from tests.servers import start_redis, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]
STUDY = "d" * 64


def synthetic(service_ms: float = 0.0, iterations: int = 1, **extra) -> BenchmarkConfig:
    return synthetic_config(service_ms, iterations, **extra)


def champion(i: int, prefix: str = "k") -> Champion:
    return Champion(f"{prefix}{i:031d}", STUDY, f"{i:064x}", "d", "e")


def wait_all(p: Pipeline, task_ids: list[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    return [p.app.AsyncResult(t).get(timeout=max(1.0, deadline - time.monotonic())) for t in task_ids]


# ---------------------------------------------------------------- 1. duplicates under load


def test_duplicates_under_load(pipeline: Pipeline, store: str) -> None:
    for i in range(3):
        pipeline.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.wait_workers(3)
    cfg = synthetic()
    sent = [enqueue_benchmark(pipeline.app, champion(k), cfg) for _ in range(10) for k in range(50)]
    results = wait_all(pipeline, [s.task_id for s in sent], timeout=600)
    statuses = collections.Counter(r["status"] for r in results)
    assert statuses == {"measured": 50, "reused": 450}, statuses
    runs = runs_by_key(store)
    benchmark_keys = {s.benchmark_key for s in sent}
    assert len(benchmark_keys) == 50 and all(runs[k] == {"FINISHED": 1} for k in benchmark_keys)
    assert pipeline.redis.llen(keys.queue("cpu")) == 0
    assert pipeline.redis.xlen(keys.BENCHMARKS_STREAM) == 50
    assert not list(pipeline.redis.scan_iter("podium:lock:*"))


# ---------------------------------------------------------------- 2. workers killed mid-benchmark


def _dead(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet (signals reach it no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


#: Kills at most (two per benchmark key); the test stops killing sooner when every request has its answer.
MAX_KILLS = 20


@pytest.mark.slow
def test_workers_killed_mid_benchmark(pipeline: Pipeline, store: str) -> None:
    """Workers SIGKILLed at random points of benchmarks (up to MAX_KILLS, as many as land before every request
    is answered: how many is the host's pace, not what is tested): every request still ends measured or reused,
    every key has exactly one FINISHED run, and every run a kill left RUNNING is ended, none of them FINISHED."""
    for i in range(2):
        pipeline.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.wait_workers(2)
    cfg = synthetic(service_ms=40, iterations=15)  # ~1.2 s per benchmark
    sent = [enqueue_benchmark(pipeline.app, champion(k, "x"), cfg) for k in range(14)]
    kills, per_key = 0, collections.Counter()
    rng = random.Random(7)
    hang_guard = time.monotonic() + 240  # not a pace to meet: a hang fails with what was seen, before the timeout
    while kills < MAX_KILLS and not all(pipeline.app.AsyncResult(s.task_id).ready() for s in sent):
        assert time.monotonic() < hang_guard, f"requests unanswered after {kills} kills: {per_key}"
        beats = [pipeline.redis.hgetall(k) for k in pipeline.redis.scan_iter("podium:heartbeat:*")]
        live = [
            b
            for b in beats
            if b
            and per_key[b["benchmark_key"]] < 2
            and b.get("phase") in ("warmup", "measure")
            and time.time() - float(b["updated"]) < 1.0
        ]
        if not live:
            time.sleep(0.05)
            continue
        target = rng.choice(live)
        time.sleep(rng.uniform(0, 0.5))  # a random point of the benchmark
        now = pipeline.redis.hgetall(keys.heartbeat(target["benchmark_key"]))
        if (
            not now
            or now.get("worker") != target["worker"]
            or now.get("phase") not in ("warmup", "measure")
            or time.time() - float(now["updated"]) > 0.6
        ):
            continue  # it finished meanwhile: not the middle of a benchmark any more
        pid = int(target["worker"].rsplit(":", 1)[-1])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        kills += 1
        per_key[target["benchmark_key"]] += 1
        assert wait_until(lambda pid=pid: _dead(pid), timeout=30), f"worker process {pid} survived SIGKILL"
    assert kills > 0, "no benchmark was caught mid-way: nothing was tested (are the benchmarks far too short?)"
    results = wait_all(pipeline, [s.task_id for s in sent], timeout=300)
    assert {r["status"] for r in results} <= {"measured", "reused"}, results
    tracking = MlflowTracking.connect(store, TagsRegistry())
    verdicts = sweep(tracking, pipeline.redis)  # what the workers' own sweeps left (usually nothing)
    assert [run for run, v in verdicts.items() if v.action == "leave"] == [], verdicts  # no lock is held any more
    running = tracking.client.search_runs([tracking.benchmark_experiment_id()], "attributes.status = 'RUNNING'")
    assert running == [], [r.info.run_id for r in running]
    runs = runs_by_key(store)
    for s in sent:
        counts = runs[s.benchmark_key]
        assert counts["FINISHED"] == 1, counts
        assert set(counts) <= {"FINISHED", "FAILED", "KILLED"}, counts
    # each kill left at most one run, now ended (none when it landed between benchmarks, before a run existed)
    ended = sum(runs[s.benchmark_key]["KILLED"] + runs[s.benchmark_key]["FAILED"] for s in sent)
    assert ended <= kills, (ended, kills)
    # locks of killed workers expire with their TTL; every other one was released
    assert wait_until(lambda: not list(pipeline.redis.scan_iter(keys.LOCK_PATTERN)), timeout=30)


# ---------------------------------------------------------------- 3. a stalled worker loses its lock


def test_stalled_worker_loses_its_lock(tmp_path: Path, store: str) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        tracking = MlflowTracking.connect(store, TagsRegistry())
        request = build_request(champion(1, "s"), synthetic())
        stalled_started, second_done = threading.Event(), threading.Event()

        def stalled_measure(req, progress) -> Measured:
            stalled_started.set()
            second_done.wait(30)  # stalled past the TTL while another worker takes the key
            progress(1, "measure", 1, 1)
            return Measured({"latency_batch_1_ms": 99.0}, {}, "stalled")

        def quick_measure(req, progress) -> Measured:
            return Measured({"latency_batch_1_ms": 1.0}, {}, "quick")

        stalled = WorkerDeps(
            r,
            tracking,
            stalled_measure,
            "stalled-worker",
            lock_ttl_ms=1000,
            fencing=StalledFencing(),
        )
        outcome: dict = {}

        def run_stalled() -> None:
            try:
                execute(request, stalled)
            except LockLost as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=run_stalled)
        thread.start()
        assert stalled_started.wait(30)
        assert wait_until(lambda: not r.exists(keys.lock(request.benchmark_key)), timeout=10)  # its TTL ran out
        second = execute(request, WorkerDeps(r, tracking, quick_measure, "second-worker", lock_ttl_ms=5000))
        second_done.set()
        thread.join(30)
        assert second.status == "measured" and second.fencing_token == 2
        assert isinstance(outcome.get("error"), LockLost)
        runs = {run.info.run_id: run for run in tracking.client.search_runs([tracking.benchmark_experiment_id()])}
        statuses = collections.Counter(run.info.status for run in runs.values())
        assert statuses == {"FINISHED": 1, "FAILED": 1}
        failed = next(run for run in runs.values() if run.info.status == "FAILED")
        assert "lock" in failed.data.tags["code.benchmark.error"]
        assert failed.data.tags["code.benchmark.fencing_token"] == "1"
        assert r.xlen(keys.BENCHMARKS_STREAM) == 1
        assert r.get(keys.done(request.benchmark_key)) == second.run_id
        r.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- 4. the aggregator killed over 5,000 events


@pytest.mark.slow
def test_aggregator_killed_at_random_points(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    trials = [f"{i:064x}" for i in range(1, 11)]
    for i, t in enumerate(trials):
        trial_run(client, STUDY, t, 0.80 + 0.01 * i)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    pipeline.start("aggregator", "aggregator")
    rng = random.Random(11)
    kill_at = sorted(rng.sample(range(200, 4800), 4))
    # runs started ten minutes before their events are committed: within the aggregator's clock bounds (a start
    # hours away from its commit is replaced by the commit time, which `podium select` does not do)
    start = int(time.time() * 1000) - 600_000
    for chunk in range(0, 5000, 250):  # MLflow written in bulk, 250 runs at a time, each chunk then streamed
        runs = [
            (trials[n % len(trials)], 5.0 + (n * 7919 % 97) / 10, f"c{int(trials[n % len(trials)], 16)}")
            for n in range(chunk, chunk + 250)
        ]
        for n, result in enumerate(bulk_results(tracking, store, STUDY, runs, start + chunk), start=chunk):
            if kill_at and n == kill_at[0]:
                kill_at.pop(0)
                os.kill(pipeline.processes["aggregator"].pid, signal.SIGKILL)
                pipeline.processes["aggregator"].stop()
                pipeline.start("aggregator", "aggregator")
            pipeline.redis.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})
    expected = select_best(store, pipeline.env, STUDY)
    latest = wait_published(pipeline.redis, STUDY, "c" * 64, expected["best"], timeout=180)
    assert latest and latest.best
    assert latest.best.model_dump(exclude={"composite_score"}) == candidate_fields(expected["best"])
    seqs = [json.loads(f["data"])["seq"] for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert "the writer's clock is skewed" not in pipeline.processes["aggregator"].log()


# ---------------------------------------------------------------- 5. Redis restarted empty


def test_redis_restarted_empty(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    client = MlflowClient(store)
    trial_run(client, STUDY, champion(1).trial_key_hash, 0.9)
    pipeline.start("worker-0", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.start("aggregator", "aggregator")
    pipeline.wait_workers(1)
    first = enqueue_benchmark(pipeline.app, champion(1), synthetic())
    measured = pipeline.app.AsyncResult(first.task_id).get(timeout=120)
    assert measured["status"] == "measured"
    best_key = keys.best_latest(STUDY, build_request(champion(1), synthetic()).identity.config_hash)
    assert wait_until(lambda: pipeline.redis.exists(best_key), timeout=60)

    port = pipeline.redis_server.port
    pipeline.redis_server.stop()  # gone, and back empty on the same port
    with pytest.raises(BrokerUnavailable, match="it was not enqueued"):
        enqueue_benchmark(pipeline.app, champion(2), synthetic())
    pipeline.redis_server = start_redis(tmp_path / "redis-again", port=port)

    # the aggregator reconnects and rebuilds from MLflow
    assert wait_until(lambda: pipeline.redis.exists(best_key), timeout=90), "the aggregator did not rebuild"
    again = enqueue_benchmark(pipeline.app, champion(1), synthetic())  # a duplicate: MLflow still knows it
    result = pipeline.app.AsyncResult(again.task_id).get(timeout=120)
    assert (result["status"], result["via"], result["run_id"]) == ("reused", "benchmark_key", measured["run_id"])
    trial_run(client, STUDY, champion(3).trial_key_hash, 0.95)
    new = enqueue_benchmark(pipeline.app, champion(3), synthetic())
    assert pipeline.app.AsyncResult(new.task_id).get(timeout=120)["status"] == "measured"


# ---------------------------------------------------------------- 6. inference backend down


def test_backend_down_fails_cleanly_and_others_flow(pipeline: Pipeline, store: str) -> None:
    from tests.servers import free_port

    # the worker's own Triton is down (nothing listens on its port)
    pipeline.start(
        "worker-0",
        "worker",
        "--target",
        "cpu",
        "--loglevel",
        "WARNING",
        env={"PODIUM_TRITON_URL": f"127.0.0.1:{free_port()}"},
    )
    pipeline.wait_workers(1)
    down = parse_model(
        BenchmarkConfig,
        {
            "benchmarking": {
                "backend": "triton",
                "request_timeout_s": 1.0,
                "triton": {"deploy": "none", "model_name": "ghost"},
            }
        },
        "chaos",
    )
    request = build_request(champion(1, "down"), down)
    from podium.producers.enqueue import send_request

    bad = send_request(pipeline.app, request)
    good = [enqueue_benchmark(pipeline.app, champion(k, "ok"), synthetic()) for k in range(5)]
    assert {r["status"] for r in wait_all(pipeline, [g.task_id for g in good], timeout=120)} == {"measured"}
    result = pipeline.app.AsyncResult(bad.task_id).get(timeout=180)
    assert result["status"] == "failed" and "server liveness check" in result["error"]
    runs = runs_by_key(store)[request.benchmark_key]
    assert runs == {"FAILED": 6}, runs  # one FAILED run per attempt, PODIUM_MAX_ATTEMPTS=6
    letters = [f for _, f in pipeline.redis.xrange(keys.DEAD_LETTERS_STREAM)]
    assert any("attempt 6/6" in f["error"] and "server liveness check" in f["error"] for f in letters)
    assert not pipeline.redis.exists(keys.lock(request.benchmark_key))


# ---------------------------------------------------------------- 7. a subscriber cut off


def test_subscriber_cut_off_catches_up_without_duplicates(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    trials = [f"{i:064x}" for i in range(1, 4)]
    for i, t in enumerate(trials):
        trial_run(client, STUDY, t, 0.8 + 0.05 * i)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    pipeline.start("aggregator", "aggregator")
    committed_result(tracking, pipeline.redis, STUDY, trials[0], 10.0, champion_run="c0")
    stop, updates = threading.Event(), queue.Queue()
    collect(stop, pipeline.settings.redis_url, STUDY, updates)
    try:
        first = updates.get(timeout=60)
        for n in range(30):
            if n in (5, 15):  # cut the subscriber off while updates continue
                pipeline.redis.client_kill_filter(_type="pubsub")
            committed_result(tracking, pipeline.redis, STUDY, trials[n % 3], 9.0 - 0.1 * n, champion_run=f"c{n % 3}")
            time.sleep(0.05)
        deadline, seen = time.monotonic() + 60, [first]
        last_published = None
        while time.monotonic() < deadline:
            raw = pipeline.redis.get(keys.best_latest(STUDY, "c" * 64))
            last_published = BestModelUpdate.model_validate_json(raw)
            while not updates.empty():
                seen.append(updates.get_nowait())
            if seen[-1].seq == last_published.seq:
                break
            time.sleep(0.2)
        seqs = [u.seq for u in seen]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
        assert seen[-1] == last_published  # the current best, after reconnecting
        history = [json.loads(f["data"])["seq"] for _, f in pipeline.redis.xrange(keys.BEST_UPDATES_STREAM)]
        assert seqs == [s for s in history if s >= first.seq]  # no gaps either
    finally:
        stop.set()
