"""``podium bench --concurrency/--request-rate/--sla-p99-ms`` on the local backend, logged to a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

from tests.integration.test_local_bench import bench, benchmark_runs, log_model_run


def test_load_levels_are_measured_logged_and_hashed(store_uri: str, client: MlflowClient, tmp_path: Path) -> None:
    run_id = log_model_run(client, tmp_path)
    args = ("--run-id", run_id, "--concurrency", "1,2", "--request-rate", "200", "--sla-p99-ms", "1000")
    out = bench(store_uri, tmp_path, *args)
    assert out.returncode == 0, out.stderr
    load = json.loads((tmp_path / "benchmark.json").read_text())["load"]
    assert set(load["levels"]) == {"c1", "c2", "r200"} and load["client"] == "bind"
    rate = load["levels"]["r200"]
    assert rate["mode"] == "request_rate" and rate["asked"] == 200 and rate["achieved_per_s"] > 0
    assert load["sla"]["p99_ms"] == 1000 and load["sla"]["met_level"] in load["levels"]
    assert "throughput at p99 <= 1000 ms" in out.stdout
    (run,) = benchmark_runs(client)
    metrics = run.data.metrics
    for level in ("c1", "c2", "r200"):
        assert metrics[f"load_{level}_throughput_per_s"] > 0 and metrics[f"load_{level}_p99_ms"] > 0
    assert metrics["load_r200_achieved_per_s"] == rate["achieved_per_s"]
    # a budget every level meets: the headline is the best level's own throughput
    best = max(lv["throughput_per_s"] for lv in load["levels"].values())
    assert metrics["throughput_at_sla_per_s"] == best == load["sla"]["throughput_per_s"]
    # other levels are another benchmark (another config hash): measured anew, not reused
    again = bench(store_uri, tmp_path, "--run-id", run_id, "--concurrency", "1")
    assert again.returncode == 0, again.stderr
    assert "Reused" not in again.stdout and len(benchmark_runs(client)) == 2


def test_bad_load_flags_fail_in_one_line(store_uri: str, tmp_path: Path) -> None:
    out = bench(store_uri, tmp_path, "--model-uri", "/x/model.pt", "--no-log", "--request-rate", "fast")
    assert out.returncode == 2 and "--request-rate must be comma-separated" in out.stderr
    out = bench(store_uri, tmp_path, "--model-uri", "/x/model.pt", "--no-log", "--concurrency", "0")
    assert out.returncode == 2 and "load.concurrency" in " ".join(out.stderr.split())
