"""MLflow 3's other model formats, logged by real training code and measured by ``podium bench --run-id``: a
``torch.export`` program (``mlflow.pytorch.log_model(..., serialization_format="pt2")``) traced to TorchScript,
and an ``mlflow.onnx.log_model`` model measured as logged (refused in one line unless the format says onnx); what
was done is recorded on the benchmark run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO
from tests.integration.test_plain_runs import config_dir, finished_benchmarks

pytestmark = [pytest.mark.timeout(600)]

pytest.importorskip("onnx", reason="mlflow.onnx.log_model needs the onnx package (podium's dev extra)")
pytest.importorskip("onnxruntime", reason="measuring an ONNX model needs onnxruntime (podium[onnx])")


def bench(tmp: Path, store: str, run_id: str, out: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PODIUM_TRACKING_URI": store, "PODIUM_CONFIG_DIR": str(config_dir(tmp))}
    return subprocess.run(
        [sys.executable, "-m", "podium", "bench", "--run-id", run_id, "--out", str(tmp / out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp,
    )


def test_pt2_and_onnx_models_are_measured(tmp_path: Path, sqlite_store_uri: str) -> None:
    store = sqlite_store_uri
    logged = subprocess.run(
        [sys.executable, str(REPO / "tests" / "flavor_training.py"), store, "flavors"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert logged.returncode == 0, logged.stderr[-3000:]
    runs = dict(line.split() for line in logged.stdout.splitlines())

    pt2 = bench(tmp_path, store, runs["pt2"], "pt2")
    assert pt2.returncode == 0, pt2.stderr[-3000:]
    summary = json.loads((tmp_path / "pt2" / "benchmark.json").read_text())
    assert summary["model_conversion"].startswith("torch.export program (pt2)")
    assert "traced to TorchScript on inputs input_ids INT64" in summary["model_conversion"]
    assert summary["batches"]["1"]["count"] > 0

    refused = bench(tmp_path, store, runs["onnx"], "refused")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-3000:]
    assert "benchmarking.model_format: onnx" in refused.stderr
    onnx = bench(tmp_path, store, runs["onnx"], "onnx", "--model-format", "onnx")
    assert onnx.returncode == 0, onnx.stderr[-3000:]
    assert json.loads((tmp_path / "onnx" / "benchmark.json").read_text())["model_conversion"] == (
        "MLflow onnx model measured as logged"
    )

    by_source = {b.data.tags["code.benchmark.champion_run_id"]: b for b in finished_benchmarks(store)}
    assert set(by_source) == {runs["pt2"], runs["onnx"]}
    assert by_source[runs["pt2"]].data.tags["code.benchmark.conversion"].startswith("torch.export program (pt2)")
    assert by_source[runs["onnx"]].data.tags["code.benchmark.conversion"] == "MLflow onnx model measured as logged"
    for source in runs.values():  # the latency beside the trial's F1
        assert "podium.latency_batch_1_p50_ms" in MlflowClient(store).get_run(source).data.metrics
