"""ONNX models on the local backend (onnxruntime), through ``podium bench`` and MLflow; the format is part
of the benchmark's identity and recorded on the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from podium.backends.factory import make_backend
from podium.backends.inputs import build_inputs
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.errors import BackendError, ConfigError
from podium.measurement.measure import run_measurement
from tests.integration.test_local_bench import bench, benchmark_runs, log_model_run
from tests.token_models import BertStyleTagger, exported_onnx, traced


@pytest.fixture(scope="module")
def tagger() -> BertStyleTagger:
    torch.manual_seed(0)
    return BertStyleTagger(vocab=100, types=True, width=16).eval()


@pytest.fixture(scope="module")
def onnx_model(tagger: BertStyleTagger, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_onnx(tagger, tmp_path_factory.mktemp("onnx") / "model.onnx", types=True)


def config(**benchmarking) -> BenchmarkConfig:
    base = {"iterations": 20, "warmup_iterations": 2, "max_length": 16, "stability": {"max_windows": 3}}
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


def test_inputs_come_from_the_graph_and_outputs_match_torch(tagger: BertStyleTagger, onnx_model: Path) -> None:
    cfg = config(model_format="onnx", batch_sizes=[1, 4])
    backend = make_backend(cfg.benchmarking, model_file=onnx_model)
    try:
        specs = backend.prepare()
        assert [(s.name, s.datatype, s.shape) for s in specs] == [
            ("input_ids", "INT64", (-1, -1)),
            ("attention_mask", "INT64", (-1, -1)),
            ("token_type_ids", "INT64", (-1, -1)),
        ]
        assert specs[0].vocab_size == 100  # read from the embedding table: ids stay inside a vocabulary of 100
        inputs = build_inputs(specs, 3, 12, seed=5)
        (served,) = backend.bind(inputs)()
        with torch.inference_mode():
            expected = tagger(*(torch.from_numpy(a) for a in inputs.values())).numpy()
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
        measured = run_measurement(backend, cfg)
    finally:
        backend.close()
    assert measured.metrics["latency_batch_4_p50_ms"] > 0
    assert "onnxruntime" in measured.device and measured.summary["device"]["format"] == "onnx"


def test_bench_an_onnx_artifact_logs_its_format_under_its_own_key(
    store_uri: str, client: MlflowClient, tmp_path: Path, tagger: BertStyleTagger, onnx_model: Path
) -> None:
    """One champion run holding model.pt and model.onnx (with its external weights, model.onnx.data, as the
    exporter writes them): two benchmarks, two keys, each run says its format."""
    run_id = log_model_run(client, tmp_path, model_file=traced(tagger, tmp_path / "src" / "model.pt", types=True))
    assert Path(f"{onnx_model}.data").is_file()
    client.log_artifact(run_id, str(onnx_model), "model")
    client.log_artifact(run_id, f"{onnx_model}.data", "model")
    out = bench(store_uri, tmp_path, "--run-id", run_id, "--model-format", "onnx", "--out", "onnx")
    assert out.returncode == 0, out.stderr
    out = bench(store_uri, tmp_path, "--run-id", run_id, "--out", "torchscript")
    assert out.returncode == 0, out.stderr
    runs = {r.data.tags["code.benchmark.model_format"]: r for r in benchmark_runs(client)}
    assert set(runs) == {"onnx", "torchscript"}
    assert runs["onnx"].data.tags["benchmark_key"] != runs["torchscript"].data.tags["benchmark_key"]
    assert "onnxruntime" in runs["onnx"].data.tags["code.benchmark.device"]
    assert all(r.info.status == "FINISHED" for r in runs.values())
    summary = json.loads((tmp_path / "onnx" / "benchmark.json").read_text())
    assert summary["config"]["benchmarking"]["model_format"] == "onnx"
    again = bench(store_uri, tmp_path, "--run-id", run_id, "--model-format", "onnx")
    assert again.returncode == 0 and "reused" in again.stdout.lower(), again.stdout
    assert len(benchmark_runs(client)) == 2
    by_path = bench(store_uri, tmp_path, "--model-uri", str(onnx_model), "--no-log", "--out", "by-path")
    assert by_path.returncode == 0, by_path.stderr  # a .onnx path needs no --model-format
    assert json.loads((tmp_path / "by-path" / "benchmark.json").read_text())["device"]["format"] == "onnx"
    weightless = log_model_run(client, tmp_path, model_file=onnx_model)  # model.onnx logged without its .data
    lost = bench(store_uri, tmp_path, "--run-id", weightless, "--model-format", "onnx", "--no-log")
    assert lost.returncode == 2 and "external_data=False" in lost.stderr, lost.stderr


def test_a_format_that_does_not_match_the_artifact_is_named(onnx_model: Path, tmp_path: Path) -> None:
    torchscript = traced(BertStyleTagger(vocab=100), tmp_path / "model.pt")
    backend = make_backend(config(model_format="onnx").benchmarking, model_file=torchscript)
    with pytest.raises(BackendError, match=r"is a TorchScript archive, not ONNX: set benchmarking\.model_format"):
        backend.prepare()
    backend = make_backend(config().benchmarking, model_file=onnx_model)
    with pytest.raises(BackendError, match=r"is an ONNX model: set benchmarking\.model_format: onnx"):
        backend.prepare()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(BackendError, match="is not a loadable ONNX model"):
        make_backend(config(model_format="onnx").benchmarking, model_file=garbage).prepare()
    with pytest.raises(BackendError, match="precision fp16 is not applied to ONNX models"):
        make_backend(config(model_format="onnx", precision="fp16").benchmarking, model_file=onnx_model)


def test_an_onnx_model_deploys_to_triton_only_as_onnx() -> None:
    with pytest.raises(ConfigError, match=r"use triton\.deploy: onnx"):
        config(model_format="onnx", backend="triton", triton={"deploy": "python"})
    with pytest.raises(ConfigError, match="set model_format: onnx"):
        config(backend="triton", triton={"deploy": "onnx"})
    assert config(model_format="onnx", backend="triton", triton={"deploy": "onnx"}).benchmarking.triton.deploy == "onnx"
