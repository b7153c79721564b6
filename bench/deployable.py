"""What an operator feels: command start-up, a fresh worker's first request, MLflow over HTTP vs sqlite.

    .venv/bin/python bench/deployable.py [--reps 5] [--runs 30]

1. ``podium --help`` vs ``python -c "import typer, rich"`` (goal <= 3x), median of ``--reps`` processes.
2. A freshly started ``podium worker`` (real redis-server, sqlite store): the run time Celery reports for its
   first request vs its tenth (goal <= 1.5x); every request is a duplicate answered from the done marker.
3. Per-benchmark bookkeeping (create run with tags, one log_batch, benchmark.json, FINISHED) and the existence
   check (hit, miss) through MlflowTracking, on sqlite and on ``mlflow server`` over HTTP (PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from podium.broker.app import create_app
from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.enqueue import build_request, send_request
from podium.settings.env import PodiumSettings
from podium.tracking.tracker import MlflowTracking
from tests.servers import spawn, start_redis
from tests.tracking_server import start_tracking_server

REPO = Path(__file__).resolve().parent.parent


def seconds(cmd: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def startup(reps: int) -> None:
    """In a venv holding a plain ``pip install .`` of today's tree (tests/venvs.py), as a user has it."""
    from tests.venvs import BARE_INSTALL, venv_with

    python = str(venv_with("bare", *BARE_INSTALL) / "python")
    seconds([python, "-m", "podium", "--help"], 1)  # byte-compile once
    help_s = seconds([python, "-m", "podium", "--help"], reps)
    base_s = seconds([python, "-c", "import typer, rich"], reps)
    print("## 1. command start-up (`pip install .` in a fresh venv)\n")
    print("| command | median s | ratio |\n| --- | ---: | ---: |")
    print(f"| python -c 'import typer, rich' (baseline) | {base_s:.3f} | 1.00x |")
    print(f"| podium --help | {help_s:.3f} | {help_s / base_s:.2f}x |\n")


def fresh_worker(tmp: Path) -> None:
    redis_server = start_redis(tmp / "redis")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "PODIUM_REDIS_URL": redis_server.url, "PODIUM_TRACKING_URI": store, "PYTHONUNBUFFERED": "1"}
    settings = PodiumSettings(redis_url=redis_server.url, tracking_uri=store)
    app = create_app(settings)
    cfg = parse_model(BenchmarkConfig, {"benchmarking": {"backend": "synthetic"}}, "bench")
    request = build_request(Champion("r" * 32, "s" * 64, "t" * 64, "d", "e"), cfg)
    import redis

    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    r.set(keys.done(request.benchmark_key), "an-earlier-run")  # every request is a duplicate
    (tmp / "worker").mkdir()
    worker = spawn([sys.executable, "-m", "podium", "worker", "--loglevel", "INFO"], tmp / "worker", env=env)
    try:
        while not app.control.ping(timeout=0.5):
            pass
        for _ in range(10):
            sent = send_request(app, request.model_copy(update={"request_id": os.urandom(8).hex()}))
            assert app.AsyncResult(sent.task_id).get(timeout=120)["status"] == "reused"
        log = (tmp / "worker" / "server.log").read_text()
        runtimes = [float(s) for s in re.findall(r"succeeded in ([0-9.e-]+)s", log)]
    finally:
        worker.stop()
        app.close()
        redis_server.stop()
    print("## 2. a fresh worker: run time of its first duplicate request vs its tenth\n")
    print("| request | run time ms (Celery) | ratio to the tenth |\n| --- | ---: | ---: |")
    assert len(runtimes) == 10, runtimes
    for i in (0, 1, 9):
        print(f"| {i + 1} | {runtimes[i] * 1000:.2f} | {runtimes[i] / runtimes[9]:.2f}x |")
    print()


def bookkeeping(tracking: MlflowTracking, runs: int) -> tuple[float, float, float]:
    tags = TagsRegistry()
    champion = Champion("c" * 32, "s" * 64, "t" * 64, "d", "e")
    logged, hits, misses = [], [], []
    metrics = {f"latency_batch_1_{k}ms": 1.0 for k in ("", "p50_", "p90_", "p95_", "p99_", "std_")}
    for i in range(runs):
        identity = BenchmarkIdentity(f"run{i:028d}", "d", "e", "c" * 64)
        run_tags = benchmark_run_tags(tags, identity, champion, backend="synthetic", target="cpu", worker="w")
        t0 = time.perf_counter()
        tracking.log_benchmark_run(run_tags, metrics, {"summary": "x" * 1300})
        logged.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert tracking.benchmark_exists(identity, champion) is not None
        hits.append(time.perf_counter() - t0)
        missing = BenchmarkIdentity(f"new{i:028d}", "d", "e", "c" * 64)
        t0 = time.perf_counter()
        assert tracking.benchmark_exists(missing, champion) is None
        misses.append(time.perf_counter() - t0)
    return tuple(statistics.median(x) * 1000 for x in (logged, hits, misses))  # type: ignore[return-value]


def http_vs_sqlite(tmp: Path, runs: int) -> None:
    sqlite = MlflowTracking.connect(f"sqlite:///{tmp / 'bk.db'}", TagsRegistry())
    server = start_tracking_server(tmp / "server")
    try:
        http = MlflowTracking.connect(server.uri, TagsRegistry())
        rows = {"sqlite": bookkeeping(sqlite, runs), "http (mlflow server, PostgreSQL)": bookkeeping(http, runs)}
    finally:
        server.stop_all()
    base = rows["sqlite"]
    print(f"## 3. MLflow per benchmark, median of {runs} ms\n")
    print("| store | log a benchmark run | exists (hit) | exists (miss) | ratio to sqlite (log / hit / miss) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, (log, hit, miss) in rows.items():
        ratio = f"{log / base[0]:.2f}x / {hit / base[1]:.2f}x / {miss / base[2]:.2f}x"
        print(f"| {name} | {log:.1f} | {hit:.1f} | {miss:.1f} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    print(f"load before the run: {os.getloadavg()[0]:.2f}\n")
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    startup(args.reps)
    fresh_worker(tmp)
    http_vs_sqlite(tmp, args.runs)


if __name__ == "__main__":
    finally_on_sigterm()
    main()
