"""Helpers that write what training code and workers write: trial runs and committed benchmark results."""

from __future__ import annotations

import collections
import os
import queue
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from celery import Celery
from mlflow import MlflowClient
from mlflow.entities import Metric

from podium.broker.app import create_app
from podium.coordination import keys
from podium.coordination.subscriber import subscribe
from podium.core.config import BenchmarkConfig
from podium.core.identity import BenchmarkIdentity
from podium.core.messages import BenchmarkResult, BestModelUpdate
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags
from podium.core.validation import parse_model
from podium.demo.model import TinyTagger, export
from podium.settings.env import PodiumSettings
from podium.testing import MemoryRunStore
from podium.tracking.tracker import MlflowTracking
from tests.bulk_store import RunRow, write_runs
from tests.conftest import REPO
from tests.servers import ServerProcess, spawn, start_redis, stop_all

CONFIG = "c" * 64
STUDY = "e" * 64


def synthetic_config(
    service_ms: float = 0.0, iterations: int = 1, mode: str = "reuse_if_exists", **benchmarking: object
) -> BenchmarkConfig:
    """A request config on the synthetic backend: one short window, stability never in the way."""
    bench = {
        "backend": "synthetic",
        "synthetic_service_ms": service_ms,
        "iterations": iterations,
        "warmup_iterations": 0,
        "stability": {"max_windows": 2, "agree_windows": 2, "max_ratio": 1000.0},
    }
    return parse_model(BenchmarkConfig, {"benchmarking": bench | benchmarking, "run": {"mode": mode}}, "tests")


def runs_by_key(store: str) -> dict[str, collections.Counter]:
    """Benchmark runs per benchmark_key, counted by status, over every experiment."""
    client = MlflowClient(store)
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for exp in client.search_experiments():
        token = None
        while True:
            page = client.search_runs(
                [exp.experiment_id], "tags.`code.stage` = 'benchmark'", max_results=5000, page_token=token
            )
            for run in page:
                out[run.data.tags["benchmark_key"]][run.info.status] += 1
            token = page.token
            if not token:
                break
    return out


def trial_run(client: MlflowClient, study: str, trial: str, f1: float, stage: str = "hpo_trial") -> str:
    exp = client.get_experiment_by_name("training")
    exp_id = exp.experiment_id if exp else client.create_experiment("training")
    run = client.create_run(
        exp_id, tags={"code.stage": stage, "code.grouping.study_key_hash": study, "code.grouping.trial_key_hash": trial}
    )
    client.log_batch(run.info.run_id, metrics=[Metric("macro-f1", f1, 0, 0)])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def committed_result(
    tracking: MlflowTracking | MemoryRunStore,
    r: redis.Redis | None,
    study: str,
    trial: str,
    latency: float,
    champion_run: str = "champion",
    config_hash: str = CONFIG,
    fast: bool = False,
    stable: bool | None = None,
    start_time: int | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> BenchmarkResult:
    """A FINISHED benchmark run in MLflow and (when ``r``) its result event in the stream, as a worker commits.
    ``fast`` skips the benchmark.json artifact; ``stable`` adds the run's stability flag; ``start_time`` (epoch
    ms, default now) orders runs whose order matters without waiting for the clock to move; ``extra_metrics``
    (e.g. a load benchmark's ``throughput_at_sla_per_s``) are logged beside the latencies."""
    tags = result_tags(tracking, study, trial, champion_run, config_hash)
    # the mean and the p50 a worker writes (selection ranks the p50 by default); equal here
    metrics = (
        {"latency_batch_1_ms": latency, "latency_batch_1_p50_ms": latency}
        | ({} if stable is None else {"latency_batch_1_stable": float(stable)})
        | (extra_metrics or {})
    )
    run_id, start = tracking.start_benchmark_run(tags, start_time=start_time)
    if fast and isinstance(tracking, MlflowTracking):
        tracking.client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    else:  # what a worker writes, through the store port (MLflow, or podium.testing's MemoryRunStore)
        tracking.record_results(run_id, metrics, {"latency": latency}, "benchmark.json")
    tracking.finish_run(run_id)
    result = result_event(run_id, start, study, trial, latency, champion_run, config_hash, metrics)
    if r is not None:
        r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})
    return result


def result_tags(
    tracking: MlflowTracking | MemoryRunStore, study: str, trial: str, champion_run: str, config_hash: str
) -> dict:
    """The tags a worker gives the benchmark run of ``champion_run`` under ``config_hash``."""
    champion = Champion(champion_run, study, trial, "d", "e")
    identity = BenchmarkIdentity(champion_run, "d", "e", config_hash)
    return benchmark_run_tags(tracking.tags, identity, champion, backend="synthetic", target="cpu", worker="w")


def result_event(
    run_id: str,
    start_time: int,
    study: str,
    trial: str,
    latency: float,
    champion_run: str,
    config_hash: str = CONFIG,
    metrics: dict[str, float] | None = None,
) -> BenchmarkResult:
    """The result event a worker commits for a benchmark run."""
    return BenchmarkResult(
        benchmark_key=BenchmarkIdentity(champion_run, "d", "e", config_hash).key,
        run_id=run_id,
        start_time=start_time,
        study_key_hash=study,
        trial_key_hash=trial,
        config_hash=config_hash,
        champion_run_id=champion_run,
        metrics=metrics or {"latency_batch_1_ms": latency, "latency_batch_1_p50_ms": latency},
        device="synthetic",
        worker="w",
        fencing_token=1,
    )


def bulk_results(
    tracking: MlflowTracking, store: str, study: str, runs: list[tuple[str, float, str]], start_time: int
) -> list[BenchmarkResult]:
    """Many committed benchmark runs written to MLflow in one transaction (``runs``: trial, latency, champion
    run), start times 1 ms apart from ``start_time``; returns their result events, not yet sent."""
    rows = [
        RunRow(
            tracking.benchmark_experiment_id(),
            start_time + i,
            result_tags(tracking, study, trial, champion_run, CONFIG),
            {"latency_batch_1_ms": latency, "latency_batch_1_p50_ms": latency},  # the mean and p50 a worker writes
        )
        for i, (trial, latency, champion_run) in enumerate(runs)
    ]
    write_runs(store, rows)
    return [
        result_event(row.run_id, row.start_time, study, trial, latency, champion_run)
        for row, (trial, latency, champion_run) in zip(rows, runs, strict=True)
    ]


def pipeline_config(folder: Path) -> Path:
    """The shipped config files, with doubtful runs let into selection: pipeline tests measure tiny models in a
    few short windows on a loaded host, so most runs come out unstable, and they test the plumbing, not the
    rule that leaves such runs out (tests/unit/test_promotion.py does)."""
    import shutil

    shutil.copytree(REPO / "config", folder, dirs_exist_ok=True)
    selection = folder / "best_model_selection.yaml"
    text = selection.read_text()
    if "include_unstable: false" not in text:
        raise AssertionError(f"{selection}: no 'include_unstable: false' to override")
    selection.write_text(text.replace("include_unstable: false", "include_unstable: true"))
    return folder


class Pipeline:
    """A real redis-server, real worker/aggregator processes started with ``start``, all stopped by PID."""

    def __init__(self, tmp: Path, store_uri: str, redis_args: list[str] | None = None, **settings: str):
        self.tmp = tmp
        self.redis_args = redis_args
        self.redis_server = start_redis(tmp / "redis", extra=redis_args)
        config_dir = pipeline_config(tmp / "config")
        extra = {f"PODIUM_{k.upper()}": str(v) for k, v in settings.items()}
        self.env = {
            **os.environ,
            "PODIUM_REDIS_URL": self.redis_server.url,
            "PODIUM_TRACKING_URI": store_uri,
            "PODIUM_CONFIG_DIR": str(config_dir),
            "PODIUM_LOCK_TTL_MS": "3000",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        self.settings = PodiumSettings(
            _env_file=None,
            **{
                "redis_url": self.redis_server.url,
                "tracking_uri": store_uri,
                "config_dir": config_dir,
                "lock_ttl_ms": 3000,
                **settings,
            },
        )
        self.app = create_app(self.settings)
        self.redis = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        self.processes: dict[str, ServerProcess] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        """``podium ARGS`` as a process, with the pipeline's environment (and ``env`` on top of it)."""
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        proc = spawn([sys.executable, "-m", "podium", *args], folder, env={**self.env, **(env or {})}, cwd=self.tmp)
        self.processes[name] = proc
        return proc

    def run_cli(self, *args: str) -> str:
        """``podium ARGS`` to completion with the pipeline's environment (in this process: tests/cli.py); its
        stdout."""
        from tests.cli import podium_in_process

        return podium_in_process(*args, env=self.env).stdout

    def restart_redis(self, between=None) -> None:
        """Stop redis-server (SIGTERM: with AOF on it syncs and exits), call ``between()``, start it again on
        the same port and folder (so it reloads its AOF, when on)."""
        port = self.redis_server.port
        self.redis_server.stop()
        if between is not None:
            between()
        self.redis_server = start_redis(self.tmp / "redis", port=port, extra=self.redis_args)

    def wait_workers(self, count: int, timeout: float = 120) -> None:
        """Until ``count`` workers answer a ping and their pool processes said they are ready (runtimes warm)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            warm = sum(1 for _ in self.redis.scan_iter(match=keys.WORKER_PATTERN))
            if warm >= count and len(self.app.control.ping(timeout=0.5, limit=count) or []) >= count:
                return
            time.sleep(0.1)
        logs = "\n".join(p.log() for p in self.processes.values())
        pytest.fail(f"{count} workers did not answer within {timeout} s:\n{logs}")

    def stop(self) -> None:
        stop_all(self.processes.values())
        self.redis.close()
        forget_results(self.app)
        self.app.close()
        self.redis_server.stop()


def forget_results(app: Celery) -> None:
    """Drop the app's subscriptions to results still awaited (a ``get`` that timed out keeps its result subscribed,
    held by the app) while Redis still runs: freed in a later test, after this Redis stopped, such a result would
    unsubscribe from a dead server in its ``__del__`` and fail that test."""
    consumer = app.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()


def trained(store: str, tmp: Path, trial: str, f1: float, width: int = 8) -> str:
    """A trial run and a refit run holding a TorchScript model, written as training code would."""
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("training")
    location = None if store.startswith("http") else (tmp / "artifacts").as_uri()  # a server serves its own
    exp_id = exp.experiment_id if exp else client.create_experiment("training", location)
    champion = ""
    for stage in ("hpo_trial", "refit"):
        run = client.create_run(
            exp_id,
            tags={"code.stage": stage, "code.grouping.study_key_hash": STUDY, "code.grouping.trial_key_hash": trial},
        )
        client.log_metric(run.info.run_id, "macro-f1", f1)
        client.log_param(run.info.run_id, "backbone", f"tiny-{width}")
        if stage == "refit":
            model = export(TinyTagger(width, 1), tmp / f"model-{trial[:6]}" / "model.pt")
            client.log_artifact(run.info.run_id, str(model), "model")
            champion = run.info.run_id
        client.set_terminated(run.info.run_id)
    return champion


def finished_runs(store: str, key: str) -> list:
    client = MlflowClient(store)
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.benchmark_key = '{key}' AND attributes.status = 'FINISHED'",
    )


def collect(stop: threading.Event, url: str, study: str | None, out: queue.Queue) -> threading.Thread:
    def run() -> None:
        for update in subscribe(url, study, stop=stop, poll_s=0.2):
            out.put(update)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def next_update(q: queue.Queue, timeout: float = 60) -> BestModelUpdate:
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no best-model update within {timeout} s")


def select_best(store: str, env: dict[str, str], study: str, config_hash: str | None = None) -> dict:
    """The selection `podium select --json` makes for ``study`` (and ``config_hash`` when the study has several),
    run in this process with the pipeline's environment (tests/cli.py)."""
    import json

    from tests.cli import podium_in_process

    out = podium_in_process("select", "--json", "--tracking-uri", store, env=env)
    assert out.returncode in (0, 3), out.stderr
    (selection,) = [
        s
        for s in json.loads(out.stdout)["selections"]
        if s["study_key_hash"] == study and config_hash in (None, s["benchmark_config_hash"])
    ]
    return selection


def candidate_fields(selected: dict) -> dict:
    """A candidate of `podium select --json` as the channel publishes it: without the weighted score and without
    what select adds beside it (the trial's params and quality metric)."""
    return {k: v for k, v in selected.items() if k not in {"composite_score", "params", "metrics"}}


def wait_published(r: redis.Redis, study: str, config_hash: str, best: dict, timeout: float) -> BestModelUpdate | None:
    """The latest published update of the scope once it shows ``best`` (or the last one seen at the timeout)."""
    deadline, latest = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        raw = r.get(keys.best_latest(study, config_hash))
        latest = BestModelUpdate.model_validate_json(raw) if raw else None
        if (
            latest
            and latest.best
            and (latest.best.trial_key_hash, latest.best.latency_ms, latest.best.benchmark_runs_count)
            == (best["trial_key_hash"], best["latency_ms"], best["benchmark_runs_count"])
        ):
            return latest
        time.sleep(0.3)
    return latest
