"""Bookkeeping, duplicate answers, aggregator throughput and publish latency, each against a baseline in
the same run, on a real redis-server and a real MLflow sqlite store.

    .venv/bin/python bench/pipeline.py [--tasks 60]

A  per-benchmark bookkeeping: podium's task (lock, checks, MLflow run with tags, metrics and artifact,
   fenced commit, release) with the zero-cost synthetic backend, vs a raw Celery task doing one
   create_run + log_batch + set_terminated + one XADD; both through the same in-process Celery worker.
B  a duplicate answered from the done marker vs the MLflow tag search it replaces.

The aggregator's throughput and publish latency are measured by ``bench/costs.py`` (C and D), on events
whose runs exist in MLflow (the aggregator verifies every event against MLflow).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from celery.contrib.testing.worker import start_worker
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from bench.stopping import finally_on_sigterm
from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.enqueue import build_request, enqueue_benchmark
from podium.settings.env import PodiumSettings
from podium.tracking.tracker import MlflowTracking
from podium.workers.app import create_worker_app as create_app
from podium.workers.execute import execute
from podium.workers.tasks import worker_deps
from tests.servers import start_redis

ZERO = {
    "backend": "synthetic",
    "iterations": 1,
    "warmup_iterations": 0,
    "stability": {"max_windows": 2, "agree_windows": 2, "max_ratio": 1000.0},
}
STUDY = "b" * 64


def trial_runs(client: MlflowClient, study: str, trials: list[str]) -> None:
    exp = client.get_experiment_by_name("training") or client.get_experiment(client.create_experiment("training"))
    for i, t in enumerate(trials):
        run = client.create_run(exp.experiment_id)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("macro-f1", 0.8 + i / 1000, 0, 0)],
            tags=[
                RunTag("code.stage", "hpo_trial"),
                RunTag("code.grouping.study_key_hash", study),
                RunTag("code.grouping.trial_key_hash", t),
            ],
        )
        client.set_terminated(run.info.run_id)


def bench_bookkeeping(app, store: str, r: redis.Redis, tasks: int) -> list[tuple[str, float]]:
    client = MlflowClient(store)
    exp = client.create_experiment("raw")

    @app.task(name="bench.raw")
    def raw(i: int) -> str:
        run = client.create_run(exp, tags={"code.stage": "benchmark", "benchmark_key": f"{i:064x}"})
        client.log_batch(run.info.run_id, metrics=[Metric("latency_batch_1_ms", 1.0, 0, 0)])
        client.set_terminated(run.info.run_id)
        r.xadd("bench:raw", {"data": "{}"})
        return run.info.run_id

    cfg = parse_model(BenchmarkConfig, {"benchmarking": ZERO}, "bench")
    rounds: dict[str, list[float]] = {"raw": [], "podium": []}
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", queues=[keys.queue("cpu")]
    ):
        for round_no in range(2):
            t0 = time.perf_counter()
            results = [raw.apply_async(args=[round_no * tasks + i], queue=keys.queue("cpu")) for i in range(tasks)]
            for res in results:
                res.get(timeout=120)
            rounds["raw"].append((time.perf_counter() - t0) / tasks)
            t0 = time.perf_counter()
            sent = [
                enqueue_benchmark(app, Champion(f"r{round_no}x{i:030d}", STUDY, "t" * 64, "d", "e"), cfg)
                for i in range(tasks)
            ]
            for s in sent:
                assert app.AsyncResult(s.task_id).get(timeout=120)["status"] == "measured"
            rounds["podium"].append((time.perf_counter() - t0) / tasks)
    raw_ms, pod_ms = statistics.median(rounds["raw"]) * 1000, statistics.median(rounds["podium"]) * 1000
    return [
        ("raw Celery task + create_run/log_batch/set_terminated + XADD (baseline)", raw_ms),
        ("podium benchmark task, zero-cost backend", pod_ms),
    ]


def bench_duplicates(app, r: redis.Redis) -> tuple[float, float]:
    deps = worker_deps(app)
    cfg = parse_model(BenchmarkConfig, {"benchmarking": ZERO}, "bench")
    champion = Champion("r0x" + "0" * 30, STUDY, "t" * 64, "d", "e")
    request = build_request(champion, cfg)
    assert execute(request, deps).status == "reused"
    marker, search = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        execute(request, deps)
        marker.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        assert deps.tracking.benchmark_exists(request.identity, champion) is not None
        search.append((time.perf_counter() - t0) * 1000)
    return statistics.median(marker), statistics.median(search)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    server = start_redis(tmp / "redis")
    try:
        store = f"sqlite:///{tmp / 'mlflow.db'}"
        config_dir = tmp / "config"
        config_dir.mkdir()
        for f in ("tags.yaml", "benchmark.yaml"):
            shutil.copy(Path(__file__).resolve().parent.parent / "config" / f, config_dir / f)
        settings = PodiumSettings(redis_url=server.url, tracking_uri=store, config_dir=config_dir)
        app = create_app(settings)
        r = redis.Redis.from_url(server.url, decode_responses=True)
        tracking = MlflowTracking.connect(store, TagsRegistry())
        trials = [f"{i:08x}" + "0" * 56 for i in range(1, 21)]
        trial_runs(tracking.client, STUDY, trials)

        rows = bench_bookkeeping(app, store, r, args.tasks)
        marker_ms, search_ms = bench_duplicates(app, r)
    finally:
        server.stop()

    (base_name, base), (pod_name, pod) = rows
    print(f"A. Bookkeeping per benchmark ({args.tasks} tasks x 2 rounds, solo in-process worker, median round)\n")
    print("| path | ms per benchmark | ratio |\n| --- | ---: | ---: |")
    print(f"| {base_name} | {base:.1f} | 1.00x |\n| {pod_name} | {pod:.1f} | {pod / base:.2f}x |\n")
    print("B. A duplicate request (200 calls, median)\n")
    print("| path | ms | ratio |\n| --- | ---: | ---: |")
    print(f"| MLflow tag search (`benchmark_exists`, baseline) | {search_ms:.2f} | 1.00x |")
    print(f"| done marker (`execute` on a done key) | {marker_ms:.2f} | {search_ms / marker_ms:.1f}x faster |\n")
    print(
        json.dumps(
            {
                "bookkeeping_ratio": pod / base,
                "marker_ms": marker_ms,
                "search_ms": search_ms,
            }
        )
    )


if __name__ == "__main__":
    finally_on_sigterm()
    main()
