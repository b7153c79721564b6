"""Models that declare no outputs, deployed to a real ``tritonserver`` (the pytriton wheel's binary; CPU, Python
backend only) after a dry run learned their outputs, and measured through podium's own paths: ``measure_model``
and ``podium bench`` logging to a real sqlite MLflow store. The outputs the server reports in its model metadata
are those derived; the values it serves are the model's own."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from podium.backends.base import InputSpec
from podium.backends.factory import make_backend
from podium.backends.inputs import build_inputs
from podium.backends.outputs import dry_run
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.demo.model import TinyTagger
from podium.errors import BackendError
from podium.measurement.artifacts import ModelSource
from podium.measurement.measure import measure_model, run_measurement
from podium.training import save_torchscript
from tests.integration.test_local_bench import bench, benchmark_runs, log_model_run
from tests.token_models import BertStyleTagger, traced
from tests.triton import TritonServer, start_triton

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory):
    server = start_triton(tmp_path_factory.mktemp("triton"))
    yield server
    server.stop()


def benchmarking(**overrides) -> dict:
    return {
        "backend": "triton",
        "iterations": 20,
        "warmup_iterations": 3,
        "max_length": 16,
        "batch_sizes": [1, 4],
        "stability": {"max_windows": 3},
        "triton": {"deploy": "python"},
    } | overrides


def config(**overrides) -> BenchmarkConfig:
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking(**overrides)}, "test")


def as_metadata(outputs: list[InputSpec]) -> list[dict]:
    return [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in outputs]


class TwoHeads(torch.nn.Module):
    """Scripted: per-token logits and predicted labels, as a tuple or by name."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 8)
        self.head = torch.nn.Linear(8, 3)

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids))


class TupleHeads(TwoHeads):
    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.encode(input_ids)
        return logits, logits.argmax(-1)


class DictHeads(TwoHeads):
    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.encode(input_ids)
        return {"labels": logits.argmax(-1), "logits": logits}


def scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13; Triton still serves it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


@pytest.mark.parametrize("saved", ["traced, no signature", "signature without outputs"])
def test_a_model_without_outputs_is_deployed_and_measured(triton: TritonServer, tmp_path: Path, saved: str) -> None:
    """Through measure_model (what a worker runs): deployed as python, measured at two batch sizes, unloaded; while
    it is measured, the server's metadata lists exactly the derived outputs; the run's notes say what was derived."""
    if saved.startswith("traced"):
        model = traced(BertStyleTagger(vocab=1000), tmp_path / "model.pt")
    else:
        inputs = [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}]
        model = save_torchscript(TinyTagger(8, 1), tmp_path / "model.pt", inputs=inputs)
    cfg = config()
    _, derived, note = dry_run(model, None, [1, 4], 16, "python")
    assert as_metadata(derived) == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, -1, 5]}]
    name = f"podium-derived-{saved.split()[0].strip(',')}"
    served: list[dict] = []

    def on_progress(batch: int, phase: str, done: int, total: int) -> None:
        if not served:  # the model is loaded now: read what the server says it returns
            status, body = triton.get(f"/v2/models/{name}")
            assert status == 200, body
            served.append(json.loads(body))

    measured = measure_model(
        cfg, ModelSource(None, None, model), None, url=triton.http, deployment_name=name, progress=on_progress
    )
    assert served and served[0]["outputs"] == as_metadata(derived)
    assert note in measured.summary["notes"]
    assert note == "outputs derived by a dry run (CPU, batch x width 1x16, 4x16, 1x8): OUTPUT__0 FP32 [-1,-1,5]"
    for b in (1, 4):
        assert (
            measured.metrics[f"latency_batch_{b}_p50_ms"] > 0 and measured.metrics[f"server_compute_batch_{b}_ms"] > 0
        )
    assert measured.summary["device"]["deploy"] == "python"
    assert name not in triton.loaded_models()


@pytest.mark.parametrize(("module", "protocol"), [(TupleHeads(), "grpc"), (DictHeads(), "http")], ids=["tuple", "dict"])
def test_every_output_is_served_under_its_derived_name(
    triton: TritonServer, tmp_path: Path, module: TwoHeads, protocol: str
) -> None:
    """Several outputs, unnamed (a tuple: OUTPUT__0, OUTPUT__1) or named by the model (a dict, in the model's own
    order): the server's metadata lists them as derived, and each serves the model's own values."""
    model = scripted(module, tmp_path / "model.pt")
    cfg = config(protocol=protocol)
    _, derived, note = dry_run(model, None, [1, 4], 16, "python")
    logits, labels = InputSpec("logits", "FP32", (-1, -1, 3)), InputSpec("labels", "INT64", (-1, -1))
    if isinstance(module, TupleHeads):
        assert derived == [InputSpec("OUTPUT__0", "FP32", (-1, -1, 3)), InputSpec("OUTPUT__1", "INT64", (-1, -1))]
    else:
        assert derived == [labels, logits]
    name = f"podium-heads-{protocol}"
    backend = make_backend(cfg.benchmarking, model_file=model, url=triton.url(protocol), deployment_name=name)
    try:
        measured = run_measurement(backend, cfg)
        status, body = triton.get(f"/v2/models/{name}")
        assert status == 200 and json.loads(body)["outputs"] == as_metadata(derived)
        inputs = build_inputs([InputSpec("input_ids", "INT64", (-1, -1))], 2, 16, seed=5)
        answer = backend.bind(inputs)()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            local = torch.jit.load(str(model))(torch.from_numpy(inputs["input_ids"]))
        expected = [t.detach().numpy() for t in (local.values() if isinstance(local, dict) else local)]
        for spec, value in zip(derived, expected, strict=True):
            got = answer.as_numpy(spec.name)
            assert got.dtype == value.dtype, spec
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5)
    finally:
        backend.close()
    assert note in measured.summary["notes"] and name not in triton.loaded_models()


def test_podium_bench_logs_what_it_derived_on_the_run(
    triton: TritonServer, store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    """``podium bench --run-id`` with a traced model and no declared outputs: measured on Triton, the MLflow run is
    FINISHED and its benchmark.json carries the note."""
    run_id = log_model_run(
        client, tmp_path, model_file=traced(BertStyleTagger(vocab=1000), tmp_path / "src" / "model.pt")
    )
    (tmp_path / "benchmark.yaml").write_text(yaml.safe_dump({"benchmarking": benchmarking()}))
    out = bench(store_uri, tmp_path, "--run-id", run_id, "--config", "benchmark.yaml", "--url", triton.http)
    assert out.returncode == 0, out.stdout + out.stderr
    note = "outputs derived by a dry run (CPU, batch x width 1x16, 4x16, 1x8): OUTPUT__0 FP32 [-1,-1,5]"
    assert note in " ".join(out.stdout.split())
    (run,) = benchmark_runs(client)
    assert run.info.status == "FINISHED" and run.data.tags["code.benchmark.backend"] == "triton"
    logged = Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp_path / "logged")))
    assert note in json.loads(logged.read_text())["notes"]


def test_a_model_whose_dry_run_fails_is_refused_before_anything_is_loaded(triton: TritonServer, tmp_path: Path) -> None:
    """A traced model with a position table of 8 rows, benchmarked at 16 tokens: the model's own error, in one line;
    the server never sees the model."""

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(1000, 4)
            self.positions = torch.nn.Parameter(torch.zeros(8, 4))

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.embed(input_ids) + self.positions

    model = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(Positional(), torch.ones(1, 8, dtype=torch.long)), str(model))
    with pytest.raises(BackendError) as refused:
        measure_model(config(), ModelSource(None, None, model), None, url=triton.http, deployment_name="podium-short")
    message = str(refused.value)
    assert "\n" not in message and "a dry run to learn them on the inputs the benchmark sends" in message
    assert "RuntimeError: The size of tensor a (16) must match the size of tensor b (8)" in message
    assert message.endswith("(make benchmarking.batch_sizes, max_length and inputs fit what the model accepts)")
    assert "podium-short" not in triton.loaded_models()
