"""Every benchmark run records the model's memory (issue 22, item 5): ``podium bench`` on the local runtime with a
real sqlite MLflow store, a small and a large model; and what a server elsewhere or the synthetic backend say."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

from podium.core.backend_registry import backend_spec
from podium.demo.model import TinyTagger, export
from podium.measurement.memory import NotMeasured, ProcessMemory, probe_for
from podium.measurement.server_memory import is_this_host
from tests.integration.test_local_bench import bench, benchmark_runs, log_model_run

#: 50,000 x 256 float32 embedding: 49 MiB of weights the large model carries beyond the small one.
LARGE_VOCAB, LARGE_WIDTH = 50_000, 256


def memory_of(store_uri: str, client: MlflowClient, tmp: Path, model: Path) -> tuple[dict, dict]:
    run_id = log_model_run(client, tmp, model_file=model)
    out = bench(store_uri, tmp, "--run-id", run_id, "--batch-sizes", "1")
    assert out.returncode == 0, out.stderr
    (run,) = [r for r in benchmark_runs(client) if r.data.tags["code.benchmark.champion_run_id"] == run_id]
    logged = Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp / run_id)))
    return run.data.metrics, json.loads(logged.read_text())["memory"]


def test_the_local_runtime_records_what_loading_the_model_added(
    store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    small = export(TinyTagger(16, 1), tmp_path / "small" / "model.pt")
    large = export(TinyTagger(LARGE_WIDTH, 1, vocab=LARGE_VOCAB), tmp_path / "large" / "model.pt", vocab=LARGE_VOCAB)
    (small_m, small_j), (large_m, large_j) = (
        memory_of(store_uri, client, tmp_path, small),
        memory_of(store_uri, client, tmp_path, large),
    )
    weights_mb = LARGE_VOCAB * LARGE_WIDTH * 4 / 2**20
    # the large model's weights are resident: what loading it added exceeds the small one's by about their size
    assert large_m["memory_model_rss_mb"] - small_m["memory_model_rss_mb"] >= 0.8 * weights_mb
    for metrics, summary in ((small_m, small_j), (large_m, large_j)):
        assert metrics["memory_host_rss_mb"] >= metrics["memory_model_rss_mb"] > 0
        assert metrics["memory_peak_rss_mb"] >= metrics["memory_host_rss_mb"] - 1
        assert "memory_gpu_mb" not in metrics  # no GPU here: never a made-up 0
        assert summary["process"].startswith("this process") and summary["peak_since"] == "the model loaded"
        assert summary["model_rss_mb"] == metrics["memory_model_rss_mb"]


def test_a_server_elsewhere_or_no_model_is_not_measured_and_says_why() -> None:
    class Remote:
        url = "203.0.113.7:8000"  # TEST-NET-3: never this host
        deployment = None

    remote = probe_for(Remote(), backend_spec("triton"), None, "http")
    assert remote == NotMeasured("the server at 203.0.113.7 is on another host (its RSS cannot be read from here)")
    reading = remote.finish()
    assert reading.metrics == {} and reading.summary == {"not_measured": remote.why}
    assert reading.notes == [f"memory not measured: {remote.why}"]
    assert probe_for(object(), backend_spec("synthetic"), None, "http") == NotMeasured(
        "the synthetic backend runs no model"
    )
    assert isinstance(probe_for(object(), backend_spec("local"), "torch", "http"), ProcessMemory)
    assert is_this_host("127.0.0.1") and is_this_host("localhost") and not is_this_host("203.0.113.7")
