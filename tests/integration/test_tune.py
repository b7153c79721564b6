"""``podium tune`` against a real ``tritonserver`` (the pytriton wheel's binary; CPU, Python backend): a 2x2 grid
of serving configs deployed, measured at a load level, unloaded; the known winner picked in both modes; the
winner's ``config.pbtxt`` loads in the server; the server's memory on every child run; the command line and the
README's snippet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.backends.triton import Deployment
from podium.core.config import BenchmarkConfig
from podium.core.tags import TagsRegistry
from podium.core.tuning import SearchSpace, ServingConfig
from podium.core.validation import parse_model
from podium.measurement.server_memory import find_server
from podium.measurement.tune import TuneRuns, TuneTarget, tune
from podium.tracking.tracker import MlflowTracking
from tests.cli import podium_in_process
from tests.conftest import REPO
from tests.integration.test_local_bench import log_model_run
from tests.pipeline_helpers import Pipeline
from tests.servers import wait_until
from tests.triton import TritonServer, start_triton

pytestmark = pytest.mark.server
NAME = "tuned"
#: Each execute() sleeps this long (ms) times the instance count squared, whatever the number of requests handed
#: to it: batching pays, and a second instance is made slower on purpose (as two instances sharing a GPU can be).
STEP_MS = 10
#: Four requests in flight: with max_batch_size 8 and dynamic batching, one execute serves them together.
#: i1-b1 ~100/s, i1-b8 ~200/s (batches of 1 and 3 alternate), i2-b1 ~50/s, i2-b8 ~75/s: the winner is i1-b8.
WINNER = ServingConfig(1, 8, True, 0)
SPACE = SearchSpace(instance_count=(1, 2), max_batch_size=(1, 8), dynamic_batching=(True,))

SLOW_MODEL = """\
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        count = config["instance_group"][0]["count"]
        self.sleep_s = float(config["parameters"]["step_ms"]["string_value"]) / 1000 * count * count

    def execute(self, requests):
        time.sleep(self.sleep_s)  # once per execute, however many requests the dynamic batcher handed over
        responses = []
        for request in requests:
            ids = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input_ids"))
            scores = ids.astype(np.float32) * 0.5
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("scores", scores)]))
        return responses
"""


def base_deployment() -> Deployment:
    config = {
        "name": NAME,
        "backend": "python",
        "max_batch_size": 8,
        "input": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        "output": [{"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]}],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": {"step_ms": {"string_value": str(STEP_MS)}},
    }
    return Deployment("python", config, {"file:1/model.py": SLOW_MODEL.encode()})


def benchmarking(**load):
    section = {
        "backend": "triton",
        "iterations": 20,
        "warmup_iterations": 4,
        "max_length": 8,
        "stability": {"max_windows": 3, "agree_windows": 2, "max_ratio": 1.5},
        "triton": {"deploy": "python"},
        "load": {"concurrency": [4], "sla_p99_ms": 1000} | load,
    }
    return parse_model(BenchmarkConfig, {"benchmarking": section}, "test").benchmarking


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_triton(tmp_path_factory.mktemp("triton-tune"))
    yield server
    server.stop()


def target(triton: TritonServer) -> TuneTarget:
    memory, why = find_server(triton.http_port)
    assert memory is not None, why
    assert memory.pid == triton.process.pid  # the process on the URL's port is the server we started
    return TuneTarget(triton.http, "http", 30.0, base_deployment(), memory)


def test_tune_picks_the_known_winner_and_logs_a_run_per_config(
    triton: TritonServer, store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    tracking = MlflowTracking.connect(store_uri, TagsRegistry())
    runs = TuneRuns(tracking, {"code.tune.mode": "exhaustive"}, "tune tuned")
    seen: list[str] = []
    found = tune(
        target(triton),
        benchmarking(),
        SPACE,
        "exhaustive",
        runs=runs,
        on_done=lambda i, o: seen.append(o.trial.config.label),
    )
    by_label = {o.trial.config.label: o for o in found.outcomes}
    assert seen == [c.label for c in SPACE.configs()] and len(found.outcomes) == 4
    assert found.search.winner is not None and found.search.winner.config == WINNER, found.table
    # batching pays: one execute serves several requests (with no queue delay the batcher alternates a lone
    # request and the rest, about 2 a batch), so the winner serves about twice what one instance without batch room
    # does (the model sleeps its step: a busy core stretches only the clients' turns; the margin is bench/tune.py's)
    assert by_label["i1-b8-dyn0"].trial.throughput_at_sla > by_label["i1-b1-dyn0"].trial.throughput_at_sla
    # every config left the server again
    assert triton.loaded_models() == []

    parent = client.get_run(found.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["code.stage"] == "tune"
    assert parent.data.tags["code.tune.winner"] == "i1-b8-dyn0"
    assert parent.data.metrics["throughput_at_sla_per_s"] == found.search.winner.throughput_at_sla
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["code.tune.config"] for r in children) == sorted(by_label)
    for run in children:
        assert run.info.status == "FINISHED"
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["code.tune.instance_count"] in ("1", "2") and tags["code.tune.dynamic_batching"] == "true"
        assert metrics["load_c4_throughput_per_s"] > 0 and metrics["load_c4_p99_ms"] > 0
        # the server's memory: its process tree after the levels (Python-backend instances are child processes)
        assert metrics["memory_host_rss_mb"] > 50 and "memory_model_rss_mb" in metrics
    two = next(r for r in children if r.data.tags["code.tune.config"] == "i2-b8-dyn0").data.metrics
    one = next(r for r in children if r.data.tags["code.tune.config"] == "i1-b8-dyn0").data.metrics
    # a second instance is a second stub process: the model's share of the server's memory grows with it
    assert two["memory_model_rss_mb"] > one["memory_model_rss_mb"] + 20

    # the winner's config.pbtxt, from the parent run, loads in the server as it is
    pbtxt = Path(client.download_artifacts(parent.info.run_id, "config.pbtxt", str(tmp_path)))
    folder = triton.repository / NAME
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(pbtxt.read_text())
    (folder / "1" / "model.py").write_text(SLOW_MODEL)
    status, body = post(triton, f"/v2/repository/models/{NAME}/load")
    assert status == 200, body
    try:
        status, body = triton.get(f"/v2/models/{NAME}/config")
        served = json.loads(body)
        assert served["max_batch_size"] == 8 and served["instance_group"][0]["count"] == 1
        assert "dynamic_batching" in served
    finally:
        post(triton, f"/v2/repository/models/{NAME}/unload")

    # quick mode on the same grid, starting from batch 8: the same winner, and neither neighbour beats it
    same_grid = SearchSpace(instance_count=(1, 2), max_batch_size=(8, 1), dynamic_batching=(True,))
    quick = tune(target(triton), benchmarking(), same_grid, "quick")
    assert quick.search.winner is not None and quick.search.winner.config == WINNER, quick.table
    assert quick.parent_run_id is None and quick.table["measured"] == 3 and quick.table["grid_size"] == 4


def post(triton: TritonServer, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{triton.http}{path}", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_config_the_server_refuses_is_a_failed_child_not_the_winner(
    triton: TritonServer, store_uri: str, client: MlflowClient
) -> None:
    # a model whose code fails to load: the server refuses it, and the search goes on without it
    broken = Deployment("python", base_deployment().config, {"file:1/model.py": b"raise ImportError('broken')\n"})
    good = TuneTarget(triton.http, "http", 30.0, base_deployment())
    bad = TuneTarget(triton.http, "http", 30.0, broken)
    from podium.measurement.tune import measure_config

    failed = measure_config(bad, WINNER, benchmarking())
    assert failed.trial.error and "refused to load model 'tuned-i1-b8-dyn0'" in failed.trial.error
    assert not failed.trial.meets_sla
    tracking = MlflowTracking.connect(store_uri, TagsRegistry())
    runs = TuneRuns(tracking, {}, "tune refused")
    run_id = runs.child(failed)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and "refused to load" in run.data.tags["code.benchmark.error"]
    # with a budget no level can meet, the search ends in one line saying what to do; the parent run FAILED
    from podium.errors import TuningError

    runs = TuneRuns(tracking, {}, "tune too tight")
    with pytest.raises(TuningError, match=r"none of the 1 serving configs met the p99 budget of 0\.001 ms"):
        tune(good, benchmarking(sla_p99_ms=0.001), SearchSpace((1,), (8,), (True,)), "exhaustive", runs=runs)
    assert client.get_run(runs.parent).info.status == "FAILED"
    assert triton.loaded_models() == []


def readme_block() -> str:
    import re

    text = (REPO / "README.md").read_text()
    heading = "### Serving-config search"
    return re.search(r"```bash\n(.*?)```", text[text.index(heading) :], re.S).group(1)


def test_the_readme_tune_command_runs_as_written(
    triton: TritonServer, store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    """The README's ``podium tune`` line, with this test's server, run and store (and short windows), on a
    TorchScript model deployed as a Python-backend model."""
    import shlex

    run_id = log_model_run(client, tmp_path)
    # the Triton recipe's config file, with short stability rules for the test's sake
    (tmp_path / "triton-cpu.yaml").write_text(
        "benchmarking:\n  backend: triton\n  triton: {deploy: python}\n  stability: {max_windows: 3, agree_windows: 2}\n"
    )
    line = readme_block().replace("\\\n", " ")
    assert "podium tune" in line and "127.0.0.1:8000" in line and "RUN" in line
    args = shlex.split(line.replace("127.0.0.1:8000", triton.http).replace("RUN", run_id))
    assert args[0] == "podium"
    out = subprocess.run(
        [sys.executable, "-m", "podium", *args[1:], "--tracking-uri", store_uri, "--iterations", "20"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "COLUMNS": "200", "HOME": os.environ["HOME"]},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    table = json.loads((tmp_path / "tune.json").read_text())
    assert table["winner"] in {row["label"] for row in table["configs"]} and table["measured"] >= 2
    assert all(row["error"] is None and "memory_host_rss_mb" in row for row in table["configs"])
    pbtxt = (tmp_path / "config.pbtxt").read_text()
    assert 'backend: "python"' in pbtxt and f'name: "podium-{run_id[:24]}"' in pbtxt
    assert "Winner: " in out.stdout and "[1] " in out.stdout
    parents = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`code.tune.winner` != ''"
    )
    assert [p.data.tags["code.tune.winner"] for p in parents] == [table["winner"]]
    assert triton.loaded_models() == []


TUNE_REQUEST = """\
benchmarking:
  backend: triton
  triton: {deploy: python}
  iterations: 20
  stability: {max_windows: 3, agree_windows: 2}
  load: {concurrency: [2], sla_p99_ms: 10000}
  tune:
    instance_count: [1]
    max_batch_size: [1, 4]
    dynamic_batching: [true]
    mode: exhaustive
"""


def test_a_request_that_asks_for_a_search_is_measured_then_searched_by_its_worker(
    triton: TritonServer, store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    """``benchmarking.tune`` in benchmark.yaml, the request sent with ``podium enqueue``: a real worker measures the
    model on its server, then searches the serving configs there; each config is a child run of the benchmark run,
    the winner's config.pbtxt and figure are on it. Asked again (``podium bench``, the same key), the whole is
    reused: the search is in the config hash."""
    run_id = log_model_run(client, tmp_path)
    pipeline = Pipeline(tmp_path / "pipeline", store_uri, triton_url=triton.http)
    try:
        (tmp_path / "pipeline" / "config" / "benchmark.yaml").write_text(TUNE_REQUEST)
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        pipeline.wait_workers(1)
        sent = podium_in_process("enqueue", "--run-id", run_id, env=pipeline.env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        finished = "tags.`code.stage` = 'benchmark' AND attributes.status = 'FINISHED'"

        def benchmarks() -> list:  # the worker may create the benchmark experiment after the request is sent
            return client.search_runs([e.experiment_id for e in client.search_experiments()], finished)

        assert wait_until(benchmarks, 300), pipeline.processes["worker"].log()
        (run,) = benchmarks()
        winner = run.data.tags["code.tune.winner"]
        assert winner in ("i1-b1-dyn0", "i1-b4-dyn0") and run.data.metrics["tuned_throughput_at_sla_per_s"] > 0
        assert run.data.metrics["load_c2_throughput_per_s"] > 0  # the benchmark's own levels, on the model as sent
        children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        assert sorted(c.data.tags["code.tune.config"] for c in children) == ["i1-b1-dyn0", "i1-b4-dyn0"]
        assert all(c.info.status == "FINISHED" and c.data.tags["code.stage"] == "tune" for c in children)
        folder = str(tmp_path / "downloads")
        summary = json.loads(Path(client.download_artifacts(run.info.run_id, "benchmark.json", folder)).read_text())
        assert summary["tune"]["winner"] == winner and summary["tune"]["mode"] == "exhaustive"
        assert {row["run_id"] for row in summary["tune"]["configs"]} == {c.info.run_id for c in children}
        pbtxt = Path(client.download_artifacts(run.info.run_id, "config.pbtxt", folder)).read_text()
        assert 'backend: "python"' in pbtxt and f"max_batch_size: {winner.split('-')[1][1:]}" in pbtxt
        assert triton.loaded_models() == []  # the benchmark's model and every config left the server again
        # each config took the server's turn, as a spread search's configs do: workers sharing it never overlap
        from podium.coordination import keys
        from podium.workers.tune_task import server_name

        assert pipeline.redis.get(keys.tune_server_fence(server_name(triton.http))) == "2"

        config = str(tmp_path / "pipeline" / "config" / "benchmark.yaml")
        again = podium_in_process("bench", "--run-id", run_id, "--config", config, env=pipeline.env)
        assert again.returncode == 0 and "Reused" in again.stdout, again.stdout + again.stderr
    finally:
        pipeline.stop()
