"""``podium tune --target``: the configs of a search spread over the workers of a queue, each worker measuring on
its Triton server: real ``podium worker`` processes, a real tritonserver (CPU, Python backend), a real store.
Two workers share the one server here, so they take turns on it (never two configs' load at once)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.cli import podium_in_process
from tests.integration.test_local_bench import log_model_run
from tests.pipeline_helpers import Pipeline
from tests.servers import wait_until
from tests.triton import TritonServer, start_triton

pytestmark = pytest.mark.server


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[TritonServer]:
    server = start_triton(tmp_path / "triton")
    yield server
    server.stop()


def tune(pipeline: Pipeline, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "tune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=pipeline.env | {"COLUMNS": "200"},
    )


def test_the_configs_are_spread_over_the_queues_workers_taking_turns_on_a_shared_server(
    tmp_path: Path, sqlite_store_uri: str, triton: TritonServer
) -> None:
    client = MlflowClient(sqlite_store_uri)
    run_id = log_model_run(client, tmp_path)
    (tmp_path / "triton-cpu.yaml").write_text(
        "benchmarking:\n  backend: triton\n  triton: {deploy: python}\n  stability: {max_windows: 3, agree_windows: 2}\n"
    )
    pipeline = Pipeline(tmp_path / "pipeline", sqlite_store_uri, triton_url=triton.http)
    try:
        # nobody serves the queue yet: one line saying how to start them, nothing sent
        alone = podium_in_process(
            "tune", "--run-id", run_id, "--target", "cpu", "--sla-p99-ms", "1000", env=pipeline.env
        )
        assert (
            alone.returncode != 0
            and "no worker that runs tune tasks consumes podium.cpu" in alone.stdout + alone.stderr
        )
        path = podium_in_process(
            "tune", "--model-uri", "model.pt", "--no-log", "--target", "cpu", "--sla-p99-ms", "9", env=pipeline.env
        )
        assert path.returncode != 0 and "give --run-id RUN or a runs:/ URI" in path.stdout + path.stderr
        both = podium_in_process("tune", "--run-id", run_id, "--target", "cpu", "--url", triton.http, env=pipeline.env)
        assert both.returncode != 0 and "give one of --url" in both.stdout + both.stderr

        for i in range(2):
            pipeline.start(f"worker-{i}", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(2)
        out = tune(
            pipeline,
            tmp_path,
            "--run-id",
            run_id,
            "--target",
            "cpu",
            "--config",
            "triton-cpu.yaml",
            "--instance-count",
            "1,2",
            "--max-batch-size",
            "4",
            "--dynamic-batching",
            "on",
            "--mode",
            "exhaustive",
            "--concurrency",
            "2",
            "--sla-p99-ms",
            "10000",
            "--iterations",
            "20",
            "--out",
            str(tmp_path / "out"),
        )
        logs = "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in pipeline.processes.items())
        assert out.returncode == 0, out.stdout + out.stderr + logs
        assert "Spreading the configs over 2 worker(s) of podium.cpu" in out.stdout
        table = json.loads((tmp_path / "out" / "tune.json").read_text())
        assert sorted(row["label"] for row in table["configs"]) == ["i1-b4-dyn0", "i2-b4-dyn0"]
        assert all(row["error"] is None and row["throughput_at_sla_per_s"] > 0 for row in table["configs"]), table
        assert 'backend: "python"' in (tmp_path / "out" / "config.pbtxt").read_text()

        parent = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'tune'"
        )
        parent = [r for r in parent if "mlflow.parentRunId" not in r.data.tags]  # the failed tries wrote nothing
        assert len(parent) == 1 and parent[0].info.status == "FINISHED"
        assert parent[0].data.tags["code.tune.target"] == "cpu" and parent[0].data.tags["code.tune.winner"]
        children = client.search_runs(
            [parent[0].info.experiment_id], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'"
        )
        measured = []
        for run in children:
            assert run.info.status == "FINISHED" and run.data.metrics["load_c2_throughput_per_s"] > 0
            path = client.download_artifacts(run.info.run_id, "tune_config.json", str(tmp_path / run.info.run_id))
            measured.append(json.loads(Path(path).read_text()))
        # each config on a worker of its own (two tasks at once, one each), on the one server, one after the other
        assert (
            sorted(m["worker"] for m in measured) == sorted(set(m["worker"] for m in measured)) and len(measured) == 2
        )
        assert {m["server"] for m in measured} == {triton.http}
        first, second = sorted(measured, key=lambda m: m["measured_from"])
        assert first["measured_to"] <= second["measured_from"]
        assert triton.loaded_models() == []
    finally:
        pipeline.stop()


def test_a_server_is_one_workers_at_a_time(tmp_path: Path) -> None:
    import redis

    from podium.errors import TuningError
    from podium.workers.tune_task import server_name, server_turn
    from tests.servers import start_redis

    server = start_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    # one server, however a worker was told its address
    assert server_name("localhost:8000") == server_name("127.0.0.1:8000") == "at-127.0.0.1:8000"
    assert server_name("[::1]:8000") == "at-::1:8000" != server_name("127.0.0.1:8001")
    held = server_turn(client, "127.0.0.1:8000", "worker-a")
    with pytest.raises(TuningError, match="busy with another worker's tuning"):
        server_turn(client, "localhost:8000", "worker-b", wait_s=0.3)
    other = server_turn(client, "127.0.0.1:8001", "worker-b", wait_s=0.3)  # another server: at once
    held.release()
    try:
        server_turn(client, "127.0.0.1:8000", "worker-b", wait_s=5).release()
        other.release()
    finally:
        client.close()
        server.stop()


def test_a_search_left_without_workers_stops_and_a_later_worker_measures_nothing_of_it(
    tmp_path: Path, sqlite_store_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every worker gone while configs wait: the search stops with one line saying so, and the configs it sent
    are marked stopped, so a worker started afterwards drops them instead of measuring them for nobody."""
    from podium.core.config import BenchmarkConfig
    from podium.core.tuning import ServingConfig
    from podium.errors import TuningError
    from podium.measurement import tune_spread

    monkeypatch.setattr(tune_spread, "LIVENESS_EVERY_S", 0.2)  # ask for the workers soon, not every 30 s
    pipeline = Pipeline(tmp_path / "pipeline", sqlite_store_uri)
    try:
        model = {"model_run_id": "r" * 32, "artifact_path": "model", "model_name": "m", "input_fingerprint": "x"}
        measure = tune_spread.over_workers(pipeline.app, pipeline.redis, "cpu", BenchmarkConfig(), model, "search1")
        configs = [ServingConfig(1, 8, True), ServingConfig(2, 8, True)]
        with pytest.raises(TuningError, match=r"no worker of podium\.cpu is left to measure i1-b8-dyn0"):
            measure(configs, lambda outcome: None)
        assert all(pipeline.redis.exists(f"podium:tune-stopped:search1:{c.label}") for c in configs)

        worker = pipeline.start("worker-late", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(1)
        assert wait_until(lambda: worker.log().count("was stopped before it was measured; dropped") == 2, 120)
        assert "deploy" not in worker.log().lower()
    finally:
        pipeline.stop()


def test_redis_gone_stops_the_search_in_one_line_instead_of_failing_its_configs(
    tmp_path: Path, sqlite_store_uri: str
) -> None:
    """The command's own connection lost is not a worker's failure: asking for the workers and sending a config
    both stop with BrokerUnavailable, which the command prints as one line."""
    from podium.core.config import BenchmarkConfig
    from podium.core.tuning import ServingConfig
    from podium.errors import BrokerUnavailable
    from podium.measurement import tune_spread

    pipeline = Pipeline(tmp_path / "pipeline", sqlite_store_uri)
    try:
        pipeline.redis_server.stop()
        with pytest.raises(BrokerUnavailable, match=r"cannot ask the broker which workers serve podium\.cpu"):
            tune_spread.queue_workers(pipeline.app, "podium.cpu", timeout_s=0.5)
        model = {"model_run_id": "r" * 32, "artifact_path": "model", "model_name": "m", "input_fingerprint": "x"}
        measure = tune_spread.over_workers(pipeline.app, pipeline.redis, "cpu", BenchmarkConfig(), model, "search2")
        outcomes: list = []
        with pytest.raises(BrokerUnavailable, match=r"cannot send a config to podium\.cpu"):
            measure([ServingConfig(1, 8, True)], outcomes.append)
        assert outcomes == []  # no config was called failed
    finally:
        pipeline.stop()
