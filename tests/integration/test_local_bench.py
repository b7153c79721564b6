"""``podium bench`` on the local PyTorch backend, with a TorchScript model logged in a real MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from podium.backends.base import InputSpec
from podium.backends.torchscript import TorchScriptBackend
from podium.demo.model import TinyTagger, export
from podium.errors import BackendError
from podium.training import save_torchscript
from tests.cli import podium_in_process
from tests.token_models import BertStyleTagger, traced

STUDY, TRIAL = "5" * 64, "7" * 64


def log_model_run(client: MlflowClient, tmp: Path, model_file: Path | None = None, payload: bytes | None = None) -> str:
    exp = client.get_experiment_by_name("training")
    exp_id = exp.experiment_id if exp else client.create_experiment("training", (tmp / "artifacts").as_uri())
    run = client.create_run(
        exp_id,
        tags={"code.stage": "refit", "code.grouping.study_key_hash": STUDY, "code.grouping.trial_key_hash": TRIAL},
    )
    if model_file is None:
        model_file = tmp / "src" / "model.pt"
        model_file.parent.mkdir(parents=True, exist_ok=True)
        if payload is not None:
            model_file.write_bytes(payload)
        else:
            export(TinyTagger(16, 1), model_file)
    client.log_artifact(run.info.run_id, str(model_file), "model")
    client.log_metric(run.info.run_id, "macro-f1", 0.8)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def bench(store_uri: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``podium bench`` in this process (tests/cli.py), none of podium's settings from the test's environment."""
    bare = {k: None for k in os.environ if k.startswith(("PODIUM_", "MLFLOW_"))} | {"COLUMNS": "200"}
    return podium_in_process(
        "bench", "--tracking-uri", store_uri, "--iterations", "20", "--batch-sizes", "1,4", *args, env=bare, cwd=cwd
    )


def benchmark_runs(client: MlflowClient):
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`code.stage` = 'benchmark'")


def test_bench_logs_once_then_reuses(store_uri: str, client: MlflowClient, tmp_path: Path) -> None:
    run_id = log_model_run(client, tmp_path)
    first = bench(store_uri, tmp_path, "--run-id", run_id)
    assert first.returncode == 0, first.stderr
    assert "Logged MLflow run" in first.stdout
    (run,) = benchmark_runs(client)
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["code.benchmark.champion_run_id"] == run_id and tags["code.benchmark.backend"] == "local"
    assert "torch 2.13.0" in tags["code.benchmark.device"]
    verdicts = {f"b{b}:{v}" for b in (1, 4) for v in ("stable", "unstable", "contended")}
    assert set(tags["code.benchmark.stability"].split(",")) <= verdicts
    assert 0 <= metrics["host_contention_batch_1"] <= 1 and 0 <= metrics["host_contention_batch_4"] <= 1
    for b in (1, 4):
        assert metrics[f"latency_batch_{b}_p50_ms"] > 0 and metrics[f"latency_batch_{b}_samples"] >= 60
    summary = json.loads((tmp_path / "benchmark.json").read_text())
    assert summary["device"]["kind"] == "cpu" and summary["inputs"][0]["name"] == "input_ids"
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp_path))).read_text())
    assert logged["batches"].keys() == {"1", "4"}

    second = bench(store_uri, tmp_path, "--run-id", run_id)
    assert second.returncode == 0, second.stderr
    assert "Reused" in second.stdout and run.info.run_id in second.stdout
    assert len(benchmark_runs(client)) == 1


def test_model_uri_without_logging(store_uri: str, client: MlflowClient, tmp_path: Path) -> None:
    run_id = log_model_run(client, tmp_path)
    out = bench(store_uri, tmp_path, "--model-uri", f"runs:/{run_id}/model/model.pt", "--no-log")
    assert out.returncode == 0, out.stderr
    assert benchmark_runs(client) == []
    assert (tmp_path / "benchmark.json").exists()


def test_not_a_model_fails_clearly_with_a_failed_run(store_uri: str, client: MlflowClient, tmp_path: Path) -> None:
    run_id = log_model_run(client, tmp_path, payload=b"this is not a model")
    out = bench(store_uri, tmp_path, "--run-id", run_id)
    assert out.returncode == 2
    assert "is not a loadable TorchScript model" in " ".join(out.stderr.split())
    (run,) = benchmark_runs(client)
    assert run.info.status == "FAILED"
    assert "is not a loadable TorchScript model" in run.data.tags["code.benchmark.error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "0" * 32], "run 00000000000000000000000000000000 is not in the MLflow store"),
        (["--model-uri", "/nope/model.pt", "--no-log"], "model file /nope/model.pt does not exist"),
        (["--model-uri", "/nope/model.pt"], "--log needs the model's MLflow run"),
        ([], "give the model"),
        (["--run-id", "x'y"], "run id may only hold"),
    ],
)
def test_bad_requests(store_uri: str, client: MlflowClient, tmp_path: Path, args: list[str], message: str) -> None:
    client.search_experiments()
    out = bench(store_uri, tmp_path, *args)
    assert out.returncode == 2, out.stdout
    assert message in " ".join(out.stderr.split())


class TwoFloats(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _scripted_two_floats(path: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(TwoFloats()), str(path))
    return path


def test_signature_podium_cannot_fill(tmp_path: Path) -> None:
    path = _scripted_two_floats(tmp_path / "m.pt")
    with pytest.raises(BackendError) as info:
        TorchScriptBackend(path, "cpu").prepare()
    message = str(info.value)
    assert "cannot tell how to fill forward(a, b)" in message and "not 'a', 'b'" in message
    assert "benchmarking:\n  inputs:\n    - {name: a, datatype: FP32, shape: [-1, -1]}" in message
    assert "--inputs a:FP32:-1x-1,b:FP32:-1x-1" in message


def test_declared_inputs_fill_a_model_podium_cannot_describe(
    store_uri: str, client: MlflowClient, tmp_path: Path
) -> None:
    """The snippet from the error, pasted into benchmark.yaml, or the --inputs flag: the model is measured."""
    path = _scripted_two_floats(tmp_path / "src" / "model.pt")
    run_id = log_model_run(client, tmp_path, model_file=path)
    without = bench(store_uri, tmp_path, "--run-id", run_id, "--no-log")
    assert without.returncode == 2 and "Declare the inputs in benchmark.yaml" in without.stderr
    config = tmp_path / "benchmark.yaml"
    config.write_text(
        "benchmarking:\n  inputs:\n    - {name: a, datatype: FP32, shape: [-1, -1]}\n"
        "    - {name: b, datatype: FP32, shape: [-1, -1]}\n"
    )
    from_file = bench(store_uri, tmp_path, "--run-id", run_id, "--config", str(config))
    assert from_file.returncode == 0, from_file.stderr
    flag = bench(store_uri, tmp_path, "--run-id", run_id, "--inputs", "a:FP32:-1x-1,b:FP32:-1x-1")
    assert flag.returncode == 0, flag.stderr
    assert "Reused" in flag.stdout or "reused" in flag.stdout.lower()  # the same config: the same benchmark_key
    (run,) = benchmark_runs(client)
    assert run.info.status == "FINISHED"
    bad = bench(store_uri, tmp_path, "--run-id", run_id, "--inputs", "a:FP32")
    assert bad.returncode == 2 and "--inputs takes name:DATATYPE:dims" in bad.stderr


@pytest.mark.parametrize("types", [False, True], ids=["ids+mask", "ids+mask+types"])
def test_a_traced_transformers_style_model_is_measured_without_a_signature(
    store_uri: str, client: MlflowClient, tmp_path: Path, types: bool
) -> None:
    """No podium signature file: the inputs come from forward's argument names, token ids stay inside the
    model's own vocabulary (100 rows here, below podium's default of 1000)."""
    path = traced(BertStyleTagger(vocab=100, types=types), tmp_path / "src" / "model.pt", types)
    backend = TorchScriptBackend(path, "cpu")
    specs = backend.prepare()
    expected = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    assert [s.name for s in specs] == expected and specs[0].vocab_size == 100
    run_id = log_model_run(client, tmp_path, model_file=path)
    out = bench(store_uri, tmp_path, "--run-id", run_id)
    assert out.returncode == 0, out.stderr
    (run,) = benchmark_runs(client)
    assert run.info.status == "FINISHED" and run.data.metrics["latency_batch_4_p50_ms"] > 0


def test_masks_cover_each_sequences_real_length() -> None:
    from podium.backends.inputs import build_inputs

    specs = [InputSpec("input_ids", "INT64", (-1, -1)), InputSpec("attention_mask", "INT64", (-1, -1))]
    batch = build_inputs(specs, 2, 6, rows=[[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]]


def test_model_that_rejects_its_inputs(tmp_path: Path) -> None:
    path = save_torchscript(
        TinyTagger(8, 1), tmp_path / "m.pt", inputs=[{"name": "input_ids", "datatype": "FP32", "shape": [-1, -1]}]
    )
    backend = TorchScriptBackend(path, "cpu")
    specs = backend.prepare()
    from podium.backends.inputs import build_inputs

    with pytest.raises(BackendError, match="the model rejected inputs"):
        backend.bind(build_inputs(specs, 1, 4))


def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="no CUDA device"):
        TorchScriptBackend(tmp_path / "m.pt", "cuda")


def test_token_ids_beyond_the_vocabulary_are_named_with_the_fix(tmp_path: Path) -> None:
    """The cause, not the first 300 characters of TorchScript's traceback (the message used to stop mid-word)."""
    from podium.backends.inputs import build_inputs

    model = traced(BertStyleTagger(vocab=100), tmp_path / "model.pt")
    declared = [InputSpec("input_ids", "INT64", (-1, -1), 5000), InputSpec("attention_mask", "INT64", (-1, -1))]
    backend = TorchScriptBackend(model, "cpu", declared=declared)
    specs = backend.prepare()
    with pytest.raises(BackendError) as rejected:
        backend.bind(build_inputs(specs, 2, 16))
    message = str(rejected.value)
    assert "RuntimeError: index out of range in self (token ids up to " in message
    assert "declare it with vocab_size in benchmarking.inputs" in message and "TorchScript interpreter" not in message
