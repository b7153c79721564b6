"""The pipeline end to end with ``backend: triton``: a real tritonserver, real ``podium worker`` processes told
where it is (PODIUM_TRITON_URL), the training hook, the aggregator, a real MLflow store; and its faults."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.hooks import BenchmarkHook
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import STUDY, Pipeline, select_best, trained, wait_published
from tests.servers import wait_until
from tests.triton import TritonServer, start_triton

pytestmark = [pytest.mark.server, pytest.mark.chaos]


def triton_config(**benchmarking) -> BenchmarkConfig:
    base = {
        "backend": "triton",
        "protocol": "http",
        "iterations": 20,
        "warmup_iterations": 3,
        "max_length": 16,
        "stability": {"max_windows": 3},
        "triton": {"deploy": "python"},
    }
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


@pytest.fixture
def store(tmp_path: Path, _migrated_db: Path) -> str:
    import shutil

    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def triton(tmp_path: Path):
    server = start_triton(tmp_path / "triton")
    yield server
    server.stop()


def podium_models(triton: TritonServer) -> list[str]:
    return [m for m in triton.loaded_models() if m.startswith("podium-")]


def runs_of(store: str) -> list:
    client = MlflowClient(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'")


def test_the_hook_through_two_workers_on_one_triton(tmp_path: Path, store: str, triton: TritonServer) -> None:
    pipeline = Pipeline(tmp_path / "pipeline", store, triton_url=triton.http)
    try:
        for i in range(2):
            pipeline.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING")
        pipeline.start("aggregator", "aggregator")
        pipeline.wait_workers(2)
        first = trained(store, tmp_path, "1" * 64, 0.8, 8)
        other = trained(store, tmp_path, "2" * 64, 0.9, 16)
        hook = BenchmarkHook(
            pipeline.app, triton_config(), tracking=MlflowTracking.connect(store, TagsRegistry()), on_error="raise"
        )
        sent = [hook(first) for _ in range(10)] + [hook(other)]
        results = [pipeline.app.AsyncResult(s.task_id).get(timeout=300) for s in sent]
        assert collections.Counter(r["status"] for r in results) == {"measured": 2, "reused": 9}, results

        finished = [r for r in runs_of(store) if r.info.status == "FINISHED"]
        assert len(finished) == 2 and {r.data.tags["benchmark_key"] for r in finished} == {
            s.benchmark_key for s in sent
        }
        for run in finished:
            assert run.data.tags["code.benchmark.device"].startswith("triton 2.")  # the server's name and version
            assert run.data.metrics["server_compute_batch_1_ms"] > 0
            assert {"server_queue_batch_1_ms", "client_overhead_batch_1_ms"} <= set(run.data.metrics)
        assert podium_models(triton) == []  # every deployment unloaded

        expected = select_best(store, pipeline.env, STUDY)
        published = wait_published(
            pipeline.redis, STUDY, expected["benchmark_config_hash"], expected["best"], timeout=120
        )
        assert published is not None and published.best.trial_key_hash == expected["best"]["trial_key_hash"]
    finally:
        pipeline.stop()


@pytest.mark.slow
def test_triton_killed_mid_benchmark_fails_the_attempt_and_the_retry_measures(
    tmp_path: Path, store: str, triton: TritonServer
) -> None:
    pipeline = Pipeline(tmp_path / "pipeline", store, triton_url=triton.http, max_attempts=6, retry_backoff_s=1)
    try:
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(1)
        champion = trained(store, tmp_path, "3" * 64, 0.8, 8)
        slow = triton_config(iterations=3000)  # 3 windows at most (triton_config): seconds, bounded
        sent = BenchmarkHook(
            pipeline.app, slow, tracking=MlflowTracking.connect(store, TagsRegistry()), on_error="raise"
        )(champion)
        beat = keys.heartbeat(sent.benchmark_key)
        assert wait_until(lambda: pipeline.redis.hget(beat, "phase") == "measure", timeout=180)
        ports = (triton.http_port, triton.grpc_port)
        os.killpg(triton.process.pid, signal.SIGKILL)  # killed mid-benchmark: no draining of requests in flight
        triton.stop()
        failed_run = wait_until(lambda: any(r.info.status == "FAILED" for r in runs_of(store)), timeout=120)
        assert failed_run, pipeline.processes["worker"].log()
        back = start_triton(tmp_path / "triton-again", ports=ports)  # the same server comes back
        try:
            result = pipeline.app.AsyncResult(sent.task_id).get(timeout=600)
            assert result["status"] == "measured", pipeline.processes["worker"].log()
            statuses = collections.Counter(r.info.status for r in runs_of(store))
            assert statuses["FINISHED"] == 1 and statuses["FAILED"] >= 1 and set(statuses) <= {"FINISHED", "FAILED"}
            failed = next(r for r in runs_of(store) if r.info.status == "FAILED")
            assert f"http://{triton.http}" in failed.data.tags["code.benchmark.error"]  # names the server
            assert not pipeline.redis.exists(keys.lock(sent.benchmark_key))
            assert podium_models(back) == []
        finally:
            back.stop()
    finally:
        pipeline.stop()


def test_a_triton_request_on_a_worker_without_a_server_is_dead_lettered_at_once(tmp_path: Path, store: str) -> None:
    pipeline = Pipeline(tmp_path / "pipeline", store)  # no PODIUM_TRITON_URL; its own config says local
    try:
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(1)
        champion = trained(store, tmp_path, "4" * 64, 0.8, 8)
        sent = BenchmarkHook(
            pipeline.app, triton_config(), tracking=MlflowTracking.connect(store, TagsRegistry()), on_error="raise"
        )(champion)
        result = pipeline.app.AsyncResult(sent.task_id).get(timeout=120)
        assert result["status"] == "dead_letter" and "PODIUM_TRITON_URL" in result["error"]
        (letter,) = [f for _, f in pipeline.redis.xrange(keys.DEAD_LETTERS_STREAM)]
        assert "--triton-url" in letter["error"] and sent.request_id in letter["payload"]
        assert runs_of(store) == []  # never started: no run, no retry
        assert not list(pipeline.redis.scan_iter(f"{keys.PREFIX}:attempts:*"))
    finally:
        pipeline.stop()


def test_a_worker_configured_for_triton_without_a_server_refuses_to_start(tmp_path: Path, store: str) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "benchmark.yaml").write_text("benchmarking:\n  backend: triton\n")
    out = subprocess.run(
        [sys.executable, "-m", "podium", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PODIUM_CONFIG_DIR": str(config_dir), "PODIUM_TRACKING_URI": store},
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--triton-url" in out.stderr, out.stderr
