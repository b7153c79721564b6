"""Warm means warm (issue 26): on a worker that said "ready", the first new model costs what any later new model
costs. Per repetition: a fresh real `podium worker` (local backend) on a real redis-server and a sqlite store;
start -> "ready" timed; then 10 distinct TorchScript models (trial + refit runs written as training code
writes them) benchmarked one after another, each timed from enqueue to the task's answer.

    .venv/bin/python bench/warm_worker.py [--reps 3] [--models 10] [--width 8]

Figures: start -> ready; the first model's time against the median of models 6-10 (goal <= 1.2x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow import MlflowClient

from bench.stopping import finally_on_sigterm
from podium.coordination import keys
from podium.core.config import BenchmarkConfig, BenchmarkingSection, StabilitySection
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import enqueue_benchmark
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import Pipeline, trained
from tests.servers import wait_until


def config() -> BenchmarkConfig:
    section = BenchmarkingSection(
        batch_sizes=[1],
        iterations=30,
        warmup_iterations=5,
        max_length=16,
        stability=StabilitySection(max_windows=3),
    )
    return BenchmarkConfig(benchmarking=section)


def one(tmp: Path, models: int, width: int) -> tuple[float, list[float]]:
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    MlflowClient(store).search_experiments()  # the training side's store
    # as any store after its first benchmark: podium's experiment exists (its creation is once per store)
    MlflowTracking.connect(store, TagsRegistry()).benchmark_experiment_id()
    champions = [trained(store, tmp, f"{i + 1:x}" * 64, 0.5 + i / 100, width=width + i) for i in range(models)]
    pipeline = Pipeline(tmp, store)
    try:
        t0 = time.monotonic()
        worker = pipeline.start("worker", "worker")
        if not wait_until(lambda: "ready: warmed" in worker.log(), 300, 0.02):
            raise SystemExit(f"the worker did not get ready:\n{worker.log()}")
        ready_s = time.monotonic() - t0
        tracking = MlflowTracking.connect(store, TagsRegistry())
        cfg = config()
        # the bench's own first answer (its result connection to Redis) is not the worker's: a request the worker
        # refuses at once (not a task message podium can read) opens it before anything is timed
        refused = pipeline.app.send_task(keys.BENCHMARK_TASK, args=[{"not": "a request"}], queue=keys.queue("cpu"))
        assert refused.get(timeout=120)["status"] == "rejected"
        times = []
        for champion in champions:
            c = tracking.champion(champion)
            t1 = time.monotonic()
            sent = enqueue_benchmark(pipeline.app, c, cfg)
            outcome = pipeline.app.AsyncResult(sent.task_id).get(timeout=300)
            times.append(time.monotonic() - t1)
            if outcome["status"] != "measured":
                raise SystemExit(f"not measured: {outcome}")
        if "imported inside a task" in worker.log():
            print("  warning: the worker imported a runtime inside a task")
        return ready_s, times
    finally:
        pipeline.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--width", type=int, default=8, help="the models' width (8: tiny; 256: small)")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    ratios = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="podium-warm-bench-") as tmp:
            ready_s, times = one(Path(tmp), args.models, args.width)
        later = statistics.median(times[5:10]) if len(times) >= 10 else statistics.median(times[1:])
        ratios.append(times[0] / later)
        print(
            f"rep {rep + 1}: start -> ready {ready_s:.1f} s; first model {times[0] * 1000:.0f} ms, median of models "
            f"6-10 {later * 1000:.0f} ms: {ratios[-1]:.2f}x; all: {', '.join(f'{t * 1000:.0f}' for t in times)} ms",
            flush=True,
        )
    print(
        f"first / median(6-10): median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max "
        f"{max(ratios):.2f}) over {args.reps} fresh workers, models of width {args.width}; load average "
        f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    finally_on_sigterm()
    main()
