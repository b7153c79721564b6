"""Faults from the field, round 3 (issue 25: breaks 1, 2, 7, 8 and 10) on real processes: a real redis-server,
real `podium aggregator` / `podium worker` processes and the CLI, a real MLflow sqlite store.

1. a legacy run with a quote in its study tag: every aggregator lives on, the run skipped with one warning;
2. a 5,000-character tag value: `podium backfill` sends every good champion, lists the refused one, exits 1;
7. eviction switched on at run time: workers and the aggregator stop taking work, `podium status` says so;
8. a future-dated run: a restarted aggregator and `podium select` place it where the live aggregator did;
10. a FINISHED run with the key but no result: measured, not "reused".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from podium.coordination import keys
from podium.core.messages import BestModelUpdate
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import build_request, enqueue_benchmark
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import CONFIG, Pipeline, result_event, result_tags, runs_by_key, synthetic_config, trial_run
from tests.servers import ServerProcess, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]
STUDY = "a" * 64
T1, T2 = "1" * 64, "2" * 64
DAY_MS = 86_400_000


def full_log(proc: ServerProcess) -> str:
    return (proc.folder / "server.log").read_text(errors="replace")


def committed(
    tracking: MlflowTracking,
    p: Pipeline | None,
    study: str,
    trial: str,
    latency: float,
    champion_run: str,
    start_time: int | None = None,
) -> str:
    """A FINISHED benchmark run with a worker's tags and figures (mean and p50, whichever selection reads) and,
    with ``p``, its result event in the stream, as a worker commits; ``start_time`` as its writer stamped it."""
    tags = result_tags(tracking, study, trial, champion_run, CONFIG)
    metrics = {"latency_batch_1_ms": latency, "latency_batch_1_p50_ms": latency}
    run_id, start = tracking.start_benchmark_run(tags, start_time=start_time)
    tracking.client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    tracking.finish_run(run_id)
    if p is not None:
        event = result_event(run_id, start, study, trial, latency, champion_run, CONFIG, metrics)
        p.redis.xadd(keys.BENCHMARKS_STREAM, {"data": event.encode()})
    return run_id


def select_json(p: Pipeline, store: str, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    done = subprocess.run(
        [sys.executable, "-m", "podium", "select", "--json", "--tracking-uri", store, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=p.env,
    )
    return done, (json.loads(done.stdout)["selections"] if done.stdout.strip() else [])


def latest(p: Pipeline, study: str) -> BestModelUpdate | None:
    raw = p.redis.get(keys.best_latest(study, CONFIG))
    return BestModelUpdate.model_validate_json(raw) if raw else None


def history(p: Pipeline) -> list[BestModelUpdate]:
    return [BestModelUpdate.model_validate_json(f["data"]) for _, f in p.redis.xrange(keys.BEST_UPDATES_STREAM)]


# ---------------------------------------------------------------- 1. a quote in a legacy run's study tag


def test_a_quote_in_a_legacy_study_tag_stops_no_aggregator(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    trial_run(client, STUDY, T1, 0.9)
    good = committed(tracking, None, STUDY, T1, 10.0, "c1")
    quoted_trial = trial_run(client, "o'brien", T1, 0.8)
    legacy = result_tags(tracking, STUDY, T1, "legacy", CONFIG) | {"code.grouping.study_key_hash": "o'brien"}
    del legacy["benchmark_key"]  # written by older code: no key
    quoted = tracking.log_benchmark_run(legacy, {"latency_batch_1_ms": 1.0, "latency_batch_1_p50_ms": 1.0}, {})

    a = pipeline.start("agg-a", "aggregator", "--name", "agg-a")
    assert wait_until(lambda: "Rebuilt from MLflow" in full_log(a), timeout=90), full_log(a)
    b = pipeline.start("agg-b", "aggregator", "--name", "agg-b")  # a standby
    assert wait_until(lambda: "podium aggregator:" in full_log(b), timeout=90), full_log(b)
    first = latest(pipeline, STUDY)
    assert first is not None and first.best is not None and first.best.benchmark_run_id == good
    a.stop()  # the leader goes: the standby leads and rebuilds from the same store
    assert wait_until(lambda: "Rebuilt from MLflow" in full_log(b), timeout=90), full_log(b)
    assert b.proc.poll() is None and a.proc.returncode in (0, -15)  # stopped by us, not by the run
    for proc in (a, b):
        text = full_log(proc)
        for run in (quoted_trial, quoted):
            lines = [line for line in text.splitlines() if run in line and "the run is skipped" in line]
            assert len(lines) == 1 and "code.grouping.study_key_hash" in lines[0], (run, text[-3000:])
    assert [u.best.benchmark_run_id for u in history(pipeline) if u.best] == [good]  # published once, unchanged

    done, selections = select_json(pipeline, store)
    assert done.returncode == 0, done.stderr
    assert [s["study_key_hash"] for s in selections] == [STUDY]
    assert quoted in done.stderr and "the run is skipped" in done.stderr


# ---------------------------------------------------------------- 2. a 5,000-character tag value at backfill


def test_backfill_sends_every_good_champion_and_lists_the_refused(pipeline: Pipeline, store: str) -> None:
    client = MlflowClient(store)
    runs = [trial_run(client, STUDY, f"{k:064x}", 0.8 + k / 100) for k in range(14)]
    client.set_tag(runs[5], "code.fingerprint.data", "x" * 5000)
    done = subprocess.run(
        [sys.executable, "-m", "podium", "backfill"], capture_output=True, text=True, timeout=300, env=pipeline.env
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr, done.stderr
    assert "13 benchmark request(s) enqueued" in done.stdout, done.stdout
    refused = [line for line in done.stdout.splitlines() if runs[5] in line]
    assert len(refused) == 1 and "code.fingerprint.data is 5000 characters long" in refused[0], done.stdout
    assert "1 run(s) refused" in done.stderr and "the other 13 were sent" in done.stderr, done.stderr
    assert pipeline.redis.llen(keys.queue("cpu")) == 13  # every good champion is in the queue


# ---------------------------------------------------------------- 8. a future-dated run


def test_a_future_dated_run_pins_latest_on_no_path(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    config = tmp_path / "latest.yaml"
    config.write_text("benchmark:\n  latency_aggregation: latest\n  latency_metric: latency_batch_1_ms\n")
    client = MlflowClient(store)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    trial_run(client, STUDY, T1, 0.9)
    live = pipeline.start("agg-live", "aggregator", "--name", "agg-live", "--config", str(config))
    assert wait_until(lambda: "Rebuilt from MLflow" in full_log(live), timeout=90), full_log(live)  # then runs come
    committed(tracking, pipeline, STUDY, T1, 10.0, "c1")
    future = committed(tracking, pipeline, STUDY, T1, 50.0, "c1", start_time=int(time.time() * 1000) + DAY_MS)
    # live, it is the newest run at its commit (Redis's clock at the XADD): published as such
    assert wait_until(lambda: (u := latest(pipeline, STUDY)) and u.best and u.best.latency_ms == 50.0, timeout=90)
    newest = committed(tracking, pipeline, STUDY, T1, 20.0, "c1")  # written after it (not in the same millisecond)
    assert wait_until(lambda: (u := latest(pipeline, STUDY)) and u.best and u.best.latency_ms == 20.0, timeout=90), (
        [(u.seq, u.reason, u.best and u.best.latency_ms) for u in history(pipeline)],
        full_log(live)[-3000:],
    )
    assert f"run {future} starts +86400 s from its commit" in full_log(live)  # the live check placed it
    live.stop()
    published = len(history(pipeline))

    restarted = pipeline.start("agg-restarted", "aggregator", "--name", "agg-restarted", "--config", str(config))
    assert wait_until(lambda: "Rebuilt from MLflow" in full_log(restarted), timeout=90), full_log(restarted)
    after = latest(pipeline, STUDY)
    assert after is not None and after.best is not None
    assert (after.best.latency_ms, after.best.benchmark_run_id) == (20.0, newest), full_log(restarted)[-3000:]
    assert len(history(pipeline)) == published  # the rebuild agreed with the live view: nothing to publish
    assert f"run {future} starts +86400 s from its end time" in full_log(restarted)

    done, selections = select_json(pipeline, store, "--config", str(config))
    assert done.returncode == 0, done.stderr
    (selection,) = selections
    assert (selection["best"]["latency_ms"], selection["best"]["benchmark_run_id"]) == (20.0, newest)


# ---------------------------------------------------------------- 10. FINISHED with the key, but no result


def test_a_finished_run_without_a_result_is_measured_not_reused(pipeline: Pipeline, store: str) -> None:
    tracking = MlflowTracking.connect(store, TagsRegistry())
    champion = Champion("h" * 32, STUDY, T1, "d", "e")
    cfg = synthetic_config()
    request = build_request(champion, cfg)
    tags = benchmark_run_tags(
        tracking.tags, request.identity, champion, backend="synthetic", target="cpu", worker="by-hand"
    )
    by_hand, _ = tracking.start_benchmark_run(tags)  # FINISHED, the key, and none of the result metrics
    tracking.finish_run(by_hand)
    worker = pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
    pipeline.wait_workers(1)
    sent = enqueue_benchmark(pipeline.app, champion, cfg)
    outcome = pipeline.app.AsyncResult(sent.task_id).get(timeout=120)
    assert outcome["status"] == "measured" and outcome["run_id"] != by_hand, outcome
    assert wait_until(lambda: by_hand in full_log(worker), timeout=30), full_log(worker)
    (line,) = [line for line in full_log(worker).splitlines() if by_hand in line]
    assert "do not count and the benchmark is measured again" in line and "latency_batch_1_ms" in line
    assert runs_by_key(store)[sent.benchmark_key] == {"FINISHED": 2}
    again = enqueue_benchmark(pipeline.app, champion, cfg)
    reused = pipeline.app.AsyncResult(again.task_id).get(timeout=120)
    assert (reused["status"], reused["run_id"]) == ("reused", outcome["run_id"])  # the run with the result


# ---------------------------------------------------------------- 7. eviction switched on at run time


def test_eviction_switched_on_at_run_time_stops_intake(tmp_path: Path, store: str) -> None:
    p = Pipeline(
        tmp_path / "pipeline",
        store,
        redis_args=["--maxmemory-policy", "noeviction"],
        redis_policy_check_s=0.5,
        retry_backoff_s=0.2,
    )
    try:
        aggregator = p.start("aggregator", "aggregator")
        worker = p.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
        p.wait_workers(1)
        cfg = synthetic_config()
        first = enqueue_benchmark(p.app, Champion("e" * 32, STUDY, T1, "d", "e"), cfg)
        assert p.app.AsyncResult(first.task_id).get(timeout=120)["status"] == "measured"
        assert wait_until(lambda: p.redis.xlen(keys.BENCHMARKS_STREAM) == 1, timeout=30)

        p.redis.config_set("maxmemory-policy", "allkeys-lru")  # switched on while everything runs
        stopped = "stopped taking work: Redis now evicts keys (maxmemory-policy allkeys-lru)"
        held = []
        for k in range(50):  # requests keep coming; the worker reads the policy again within its 0.5 s
            held.append(enqueue_benchmark(p.app, Champion(f"{k:032x}", STUDY, T1, "d", "e"), cfg))
            assert wait_until(
                lambda: stopped in full_log(worker) or p.app.AsyncResult(held[-1].task_id).ready(), timeout=60
            ), full_log(worker)[-2000:]
            if stopped in full_log(worker):
                break
        else:
            pytest.fail(f"the worker never stopped taking work:\n{full_log(worker)[-2000:]}")
        held += [enqueue_benchmark(p.app, Champion(f"f{k:031x}", STUDY, T2, "d", "e"), cfg) for k in range(3)]
        assert wait_until(lambda: stopped in full_log(aggregator), timeout=30), full_log(aggregator)[-2000:]
        status = json.loads(p.run_cli("status", "--json"))
        assert len(status["redis"]["intake_stopped"]) == 2, status["redis"]
        assert any("podium worker" in s for s in status["redis"]["intake_stopped"])
        assert any("podium aggregator" in s for s in status["redis"]["intake_stopped"])
        assert any(m.startswith("intake stopped: ") for m in status["redis"]["problems"])
        # from the stop on, nothing is measured or answered: the worker holds what it took, unacknowledged
        answered = [s for s in held if p.app.AsyncResult(s.task_id).ready()]
        assert len(answered) == len(held) - 4  # all but the one that met the stop and the 3 sent after it
        assert [p.app.AsyncResult(s.task_id).state for s in held[-4:]] == ["STARTED"] + ["PENDING"] * 3
        assert p.redis.xlen(keys.BENCHMARKS_STREAM) == 1 + len(answered) == len(runs_by_key(store))
        for proc in (worker, aggregator):  # one error line each, however many checks
            assert full_log(proc).count(stopped) == 1

        p.redis.config_set("maxmemory-policy", "noeviction")  # undone: work resumes
        results = [p.app.AsyncResult(s.task_id).get(timeout=120) for s in held]
        assert [r["status"] for r in results] == ["measured"] * len(held)
        assert wait_until(lambda: "takes work again" in full_log(aggregator), timeout=30), full_log(aggregator)
        assert json.loads(p.run_cli("status", "--json"))["redis"]["intake_stopped"] == []
        assert worker.proc.poll() is None and aggregator.proc.poll() is None
    finally:
        p.stop()
