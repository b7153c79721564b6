"""podium against a team's real MLflow: ``mlflow server`` (the client's version) on PostgreSQL, artifacts served
through it (``mlflow-artifacts:``). Real redis-server, real worker and aggregator processes."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.enqueue import enqueue_benchmark
from podium.producers.hooks import BenchmarkHook
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import STUDY, Pipeline, select_best, trained, wait_published
from tests.servers import wait_until
from tests.tracking_server import TrackingServer, start_tracking_server

pytestmark = [pytest.mark.server, pytest.mark.chaos]


def local_config(**benchmarking) -> BenchmarkConfig:
    base = {"iterations": 20, "warmup_iterations": 2, "max_length": 8, "stability": {"max_windows": 3}}
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


def benchmark_runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'")


def test_two_workers_an_aggregator_and_the_alias_over_http(tmp_path: Path, server_store_uri: str) -> None:
    store = server_store_uri
    pipeline = Pipeline(tmp_path / "pipeline", store, champion_model="tagger-{study}-{config}")
    try:
        for i in range(2):
            pipeline.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "WARNING")
        pipeline.start("aggregator", "aggregator")
        pipeline.wait_workers(2)
        first, other = trained(store, tmp_path, "1" * 64, 0.8, 8), trained(store, tmp_path, "2" * 64, 0.9, 16)
        hook = BenchmarkHook(
            pipeline.app, local_config(), tracking=MlflowTracking.connect(store, TagsRegistry()), on_error="raise"
        )
        sent = [hook(first) for _ in range(6)] + [hook(other)]  # the local backend downloads each model over HTTP
        results = [pipeline.app.AsyncResult(s.task_id).get(timeout=300) for s in sent]
        assert collections.Counter(r["status"] for r in results) == {"measured": 2, "reused": 5}, results

        client = MlflowClient(store)
        finished = [r for r in benchmark_runs(store) if r.info.status == "FINISHED"]
        assert len(finished) == 2
        for run in finished:
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the tracking server
            summary = json.loads(
                Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp_path))).read_text()
            )
            assert summary["benchmark_config_hash"] == run.data.tags["code.benchmark.config_hash"]

        expected = select_best(store, pipeline.env, STUDY)
        published = wait_published(pipeline.redis, STUDY, expected["benchmark_config_hash"], expected["best"], 120)
        assert published is not None and published.best.trial_key_hash == expected["best"]["trial_key_hash"]
        name = f"tagger-{STUDY[:12]}-{expected['benchmark_config_hash'][:12]}"
        assert wait_until(lambda: alias_run(client, name) == expected["best"]["artifact_run_id"], timeout=60)
        # a restarted aggregator rebuilds from the server and republishes nothing new
        seq = published.seq
        pipeline.processes["aggregator"].stop()
        pipeline.start("aggregator-2", "aggregator")
        assert wait_until(lambda: pipeline.redis.xinfo_groups(keys.BENCHMARKS_STREAM)[0]["consumers"] >= 1, 60)
        assert wait_published(pipeline.redis, STUDY, expected["benchmark_config_hash"], expected["best"], 60).seq == seq
    finally:
        pipeline.stop()


def alias_run(client: MlflowClient, name: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, "champion").run_id
    except Exception:  # not there yet
        return None


@pytest.mark.slow
def test_the_tracking_server_killed_mid_benchmark(
    tmp_path: Path, server_store_uri: str, tracking_server: TrackingServer
) -> None:
    store = server_store_uri
    pipeline = Pipeline(tmp_path / "pipeline", store, max_attempts=8, retry_backoff_s=1)
    try:
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(1)
        champion = trained(store, tmp_path, "3" * 64, 0.8, 8)
        slow = local_config(backend="synthetic", synthetic_service_ms=20.0, iterations=60)  # ~4 s of measuring
        tracking = MlflowTracking.connect(store, TagsRegistry())
        sent = enqueue_benchmark(pipeline.app, tracking.champion(champion), slow)
        beat = keys.heartbeat(sent.benchmark_key)
        assert wait_until(lambda: pipeline.redis.hget(beat, "phase") == "measure", timeout=120)
        tracking_server.stop()  # the tracking server goes away mid-benchmark
        assert wait_until(lambda: not pipeline.redis.exists(beat), timeout=120)  # that attempt ended
        back = start_tracking_server(tmp_path / "server-again", tracking_server.postgres, tracking_server.port)
        tracking_server.process = back.process  # the session's server, back on its port
        result = pipeline.app.AsyncResult(sent.task_id).get(timeout=300)
        assert result["status"] == "measured", pipeline.processes["worker"].log()
        statuses = collections.Counter(r.info.status for r in benchmark_runs(store))
        assert statuses["FINISHED"] == 1 and "RUNNING" not in statuses, statuses  # the orphan was swept
        log = pipeline.processes["worker"].log()
        # a store outage is waited out, not counted against the request's attempts (issue 25)
        assert "TrackingError" in log and "not counted as an attempt" in log, log[-3000:]
        assert "failed (attempt" not in log, log[-3000:]
    finally:
        pipeline.stop()
