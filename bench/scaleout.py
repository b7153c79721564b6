"""Scale-out on one host: a queue of distinct CPU-heavy benchmarks (threads 1) drained by 1 worker vs 2 workers,
each against a plain single-thread torch process making the same calls, in the same run.

    .venv/bin/python bench/scaleout.py [--reps 3] [--models 8]

Real parts: a redis-server, two Celery worker processes (``celery -A podium.workers worker``, prefork, -c 1),
a real MLflow sqlite store holding 8 TorchScript champions (same shape, different weights). Worker 1 consumes
queues ``podium.scale-solo`` and ``podium.scale-duo``, worker 2 only ``podium.scale-duo``: the 1-worker drain
sends the 8 requests to the first, the 2-worker drain to the second (``run.mode: force_new``, so every drain
measures all 8). The plain process loads each model file, sets ``torch.set_num_threads(1)`` and makes the same
calls (warm-up + iterations x windows on the same synthetic inputs), timed with ``perf_counter_ns``.

Figures per repetition (the three phases interleaved, their order rotated), then the median of the reps:
  scale      drain(1 worker) / drain(2 workers)                      goal >= 1.6 (= min(N, C) x 0.8)
  p50 2w/1w  median p50 under 2 workers / median p50 of the lone one  goal <= 1.2
  p50 vs plain, drain(1 worker) / plain process time                 goal <= 1.1
The host load (/proc/loadavg) is printed before and after every phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm

STUDY = "5c" * 32
WIDTH, DEPTH, MAX_LENGTH = 384, 2, 128
WARMUP, ITERATIONS, WINDOWS = 10, 60, 2
QUEUES = {"solo": "podium.scale-solo", "duo": "podium.scale-duo"}


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


# ---------------------------------------------------------------- the plain process


def plain(folder: Path) -> None:
    """One process, one thread: each model loaded and called exactly as a worker does; JSON on stdout."""
    import torch

    from podium.backends.inputs import build_inputs
    from podium.backends.torchscript import read_signature

    torch.set_num_threads(1)
    models = sorted(folder.glob("*/model.pt"))
    p50s = []
    start = time.perf_counter_ns()
    for path in models:
        specs = read_signature(path)[0]
        model = torch.jit.load(str(path), map_location="cpu").eval()
        inputs = [torch.from_numpy(a) for a in build_inputs(specs, 1, MAX_LENGTH, None, 0).values()]
        samples = []
        with torch.inference_mode():
            for _ in range(WARMUP):
                model(*inputs)
            for _ in range(ITERATIONS * WINDOWS):
                t = time.perf_counter_ns()
                model(*inputs)
                samples.append(time.perf_counter_ns() - t)
        samples.sort()
        p50s.append(samples[round(0.5 * (len(samples) - 1))] / 1e6)
    print(json.dumps({"seconds": (time.perf_counter_ns() - start) / 1e9, "p50_ms": p50s}))


# ---------------------------------------------------------------- the pipeline


def champions(store: str, tmp: Path, count: int) -> list:
    import torch
    from mlflow import MlflowClient

    from podium.core.records import Champion
    from podium.demo.model import TinyTagger, export

    client = MlflowClient(store)
    exp = client.create_experiment("training", (tmp / "artifacts").as_uri())
    out = []
    for i in range(count):
        torch.manual_seed(i)
        run = client.create_run(exp, tags={"code.stage": "refit"})
        path = export(TinyTagger(WIDTH, DEPTH), tmp / "models" / f"m{i}" / "model.pt")
        client.log_artifact(run.info.run_id, str(path), "model")
        client.set_terminated(run.info.run_id)
        out.append(Champion(run.info.run_id, STUDY, f"{i:064x}", "d", "e"))
    return out


def config(target: str):
    from podium.core.config import BenchmarkConfig
    from podium.core.validation import parse_model

    bench = {
        "backend": "local",
        "threads": 1,
        "target": target,
        "max_length": MAX_LENGTH,
        "iterations": ITERATIONS,
        "warmup_iterations": WARMUP,
        "stability": {"max_windows": WINDOWS, "agree_windows": WINDOWS, "max_ratio": 1000.0},
    }
    return parse_model(BenchmarkConfig, {"benchmarking": bench, "run": {"mode": "force_new"}}, "bench")


def drain(app, store: str, models: list, target: str) -> dict:
    """Send one request per model to ``target``'s queue; seconds until every answer is in, and the p50s."""
    from mlflow import MlflowClient

    from podium.producers.enqueue import enqueue_benchmark

    cfg = config(target)
    start = time.perf_counter()
    sent = [enqueue_benchmark(app, m, cfg) for m in models]
    results = [app.AsyncResult(s.task_id).get(timeout=600) for s in sent]
    seconds = time.perf_counter() - start
    bad = [r for r in results if r.get("status") != "measured"]
    if bad:
        raise SystemExit(f"a benchmark was not measured: {bad[0]}")
    client = MlflowClient(store)
    runs = [client.get_run(r["run_id"]) for r in results]
    placements = [r.data.tags.get("code.benchmark.device", "") for r in runs]
    return {
        "seconds": seconds,
        "p50_ms": [r.data.metrics["latency_batch_1_p50_ms"] for r in runs],
        "contended": sum("contended" in p for p in placements),
    }


def start_worker(tmp: Path, env: dict, name: str, queues: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "podium.workers", "worker", "-Q", queues, "-c", "1"]
    cmd += ["--prefetch-multiplier", "1", "-n", f"{name}@%h", "--loglevel", "WARNING"]
    log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--plain", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        return plain(args.plain)

    from mlflow import MlflowClient

    from podium.broker.app import create_app
    from podium.settings.env import PodiumSettings
    from tests.servers import start_redis, stop_pid

    print(f"load at start {load()} (/proc/loadavg 1-min), {len(os.sched_getaffinity(0))} usable cores", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="podium-scaleout-"))
    server = start_redis(tmp / "redis")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    MlflowClient(store).search_experiments()  # creates and migrates the store (workers never do)
    env = {
        **os.environ,
        "PODIUM_REDIS_URL": server.url,
        "PODIUM_TRACKING_URI": store,
        "PODIUM_CONFIG_DIR": str(tmp / "no-config"),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    workers: list[subprocess.Popen] = []
    try:
        models = champions(store, tmp, args.models)
        settings = PodiumSettings(_env_file=None, redis_url=server.url, tracking_uri=store)
        app = create_app(settings)
        workers = [
            start_worker(tmp, env, "w1", f"{QUEUES['solo']},{QUEUES['duo']}"),
            start_worker(tmp, env, "w2", QUEUES["duo"]),
        ]
        deadline = time.monotonic() + 180
        while len(app.control.ping(timeout=0.5) or []) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not start: see " + str(tmp))
        drain(app, store, models[:2], "scale-duo")  # each worker's first task (connections) is not timed
        phases = ["solo", "duo", "plain"]
        reps = []
        for rep in range(args.reps):
            order = phases[rep % 3 :] + phases[: rep % 3]
            row: dict = {}
            for phase in order:
                before = load()
                if phase == "plain":
                    out = subprocess.run(
                        [sys.executable, __file__, "--plain", str(tmp / "models")],
                        capture_output=True,
                        text=True,
                        check=True,
                        env=env,
                    )
                    row[phase] = json.loads(out.stdout.strip().splitlines()[-1])
                else:
                    row[phase] = drain(app, store, models, f"scale-{phase}")
                row[phase]["load"] = f"{before} -> {load()}"
            reps.append(row)
            print(f"rep {rep + 1} ({', '.join(order)}): " + json.dumps(summary(row)), flush=True)
        report(reps)
    finally:
        for w in workers:
            stop_pid(w.pid)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load at end {load()}")


def summary(row: dict) -> dict:
    med = {k: statistics.median(row[k]["p50_ms"]) for k in ("solo", "duo", "plain")}
    return {
        "drain_1w_s": round(row["solo"]["seconds"], 2),
        "drain_2w_s": round(row["duo"]["seconds"], 2),
        "plain_s": round(row["plain"]["seconds"], 2),
        "scale": round(row["solo"]["seconds"] / row["duo"]["seconds"], 2),
        "p50_1w_ms": round(med["solo"], 3),
        "p50_2w_ms": round(med["duo"], 3),
        "p50_plain_ms": round(med["plain"], 3),
        "p50_2w_over_1w": round(med["duo"] / med["solo"], 3),
        "p50_1w_over_plain": round(med["solo"] / med["plain"], 3),
        "p50_2w_over_plain": round(med["duo"] / med["plain"], 3),
        "drain_1w_over_plain": round(row["solo"]["seconds"] / row["plain"]["seconds"], 3),
        "contended_runs": row["solo"]["contended"] + row["duo"]["contended"],
        "load": {k: row[k]["load"] for k in ("solo", "duo", "plain")},
    }


def report(reps: list[dict]) -> None:
    rows = [summary(r) for r in reps]
    goals = {
        "scale": (">=", 1.6),
        "p50_2w_over_1w": ("<=", 1.2),
        "p50_1w_over_plain": ("<=", 1.1),
        "p50_2w_over_plain": ("<=", 1.1),
        "drain_1w_over_plain": ("<=", 1.1),
    }
    print("\n| figure | " + " | ".join(f"rep {i + 1}" for i in range(len(rows))) + " | median | goal |")
    print("|---" * (len(rows) + 3) + "|")
    for key in ("drain_1w_s", "drain_2w_s", "plain_s", "p50_1w_ms", "p50_2w_ms", "p50_plain_ms", *goals):
        values = [r[key] for r in rows]
        goal = " ".join(map(str, goals[key])) if key in goals else ""
        print(f"| {key} | " + " | ".join(map(str, values)) + f" | {round(statistics.median(values), 3)} | {goal} |")
    print(
        "| host load 1-min (before -> after: 1w, 2w, plain) | "
        + " | ".join(f"{r['load']['solo']}, {r['load']['duo']}, {r['load']['plain']}" for r in rows)
        + " | | |"
    )
    print(f"| contended runs | {' | '.join(str(r['contended_runs']) for r in rows)} | | 0 |")


if __name__ == "__main__":
    finally_on_sigterm()
    main()
