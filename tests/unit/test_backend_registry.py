"""The backend registry: every entry resolves to its module's runtime, the config and the hash follow it, and a
backend registered here, in a test module only, is measured end to end by ``measure_model`` with no production
file edited (the exercise of docs/adding-a-backend.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from podium.backends.base import HardwareInfo, InputSpec, RuntimeRequest, ServerStats
from podium.backends.factory import make_backend, resolve
from podium.core.backend_registry import BACKENDS, FORMATS, BackendSpec, deploy_mismatch, format_of_path
from podium.core.choices import Deploy
from podium.core.config import BenchmarkConfig, BenchmarkingSection
from podium.core.identity import benchmark_config_hash
from podium.errors import BackendError, ConfigError
from podium.measurement.artifacts import ModelSource
from podium.measurement.measure import measure_model


def test_every_entry_names_a_callable_of_its_module() -> None:
    targets = [b.runtime for b in BACKENDS.values()]
    targets += [t for f in FORMATS.values() for t in (f.in_process, f.signature, f.from_torch) if t]
    for target in targets:
        assert callable(resolve(target)), target


def test_every_triton_deploy_serves_one_format() -> None:
    deploys = set(get_args(Deploy)) - {"none"}
    served = [d for f in FORMATS.values() for d in f.deploys]
    assert sorted(served) == sorted(deploys)


def test_a_deploy_that_does_not_serve_the_format_is_refused_in_one_line() -> None:
    assert deploy_mismatch("onnx", "onnx") is None and deploy_mismatch("torchscript", "none") is None
    assert deploy_mismatch("onnx", "libtorch") == (
        "ONNX models cannot be deployed as triton.deploy: libtorch; use triton.deploy: onnx"
    )
    assert deploy_mismatch("torchscript", "onnx") == "triton.deploy: onnx deploys ONNX models: set model_format: onnx"
    with pytest.raises(ConfigError, match=r"ONNX models cannot be deployed as triton\.deploy: libtorch"):
        BenchmarkConfig().with_overrides(backend="triton", model_format="onnx")
    with pytest.raises(ConfigError, match=r"model_format: .*unknown model format, got 'tflite'; podium has"):
        BenchmarkConfig().with_overrides(model_format="tflite")


def test_a_path_names_its_format_by_its_ending() -> None:
    assert format_of_path("model/model.ONNX") == "onnx"
    assert format_of_path("model/model.pt") is None  # TorchScript files have any name: the config says
    assert format_of_path(None) is None


# ------------------------------------------------------------------ a backend added in this test module only


class ToyRuntime:
    """A runtime that counts the calls it answers: each one a product of the batch, no model file."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.calls = 0

    def prepare(self) -> list[InputSpec]:
        return [InputSpec("x", "FP32", (-1, 4))]

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        x = inputs["x"]

        def call() -> object:
            self.calls += 1
            return x * self.scale

        return call

    def stats(self) -> ServerStats | None:
        return None

    def notes(self) -> list[str]:
        return ["toy runtime"]

    def describe(self) -> HardwareInfo:
        return HardwareInfo(f"toy x{self.scale:g}", {"kind": "toy"})

    def close(self) -> None:
        OPENED.remove(self)


OPENED: list[ToyRuntime] = []


def open_toy(request: RuntimeRequest) -> ToyRuntime:
    runtime = ToyRuntime(1.0 + request.cfg.synthetic_service_ms)
    OPENED.append(runtime)
    return runtime


TOY = BackendSpec(
    name="toy",
    runtime=f"{__name__}:open_toy",
    formats=(),
    model_file="never",
    hashed_settings=("synthetic_service_ms",),
    contention_note="toy: host_contention recorded only",
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> BackendSpec:
    monkeypatch.setitem(BACKENDS, TOY.name, TOY)  # type: ignore[index]  # the registration, undone after
    return TOY


def toy_config(**overrides: object) -> BenchmarkConfig:
    base = {"backend": "toy", "batch_sizes": [1, 4], "iterations": 20, "warmup_iterations": 2}
    return BenchmarkConfig().with_overrides(**(base | overrides))


def test_an_unregistered_backend_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"backend: .*unknown backend, got 'toy'; podium has local, triton"):
        toy_config()


def test_a_registered_backend_is_measured_end_to_end(toy: BackendSpec) -> None:
    config = toy_config(synthetic_service_ms=1.0)
    cfg = config.benchmarking
    hashed = benchmark_config_hash(cfg, "fp")
    measured = measure_model(config, ModelSource(None, None, None), None, config_hash=hashed)
    assert measured.device == "toy x2"
    assert set(measured.summary["batches"]) == {"1", "4"}
    assert all(measured.summary["batches"][b]["count"] >= cfg.iterations for b in ("1", "4"))
    notes = measured.summary["notes"]
    assert "toy runtime" in notes and any(n.startswith("toy: host_contention") or "/proc/stat" in n for n in notes)
    assert OPENED == []  # measure_model closed it
    # its own setting is part of its hash; a backend's name always is
    assert benchmark_config_hash(cfg.model_copy(update={"synthetic_service_ms": 2.0}), "fp") != hashed
    assert benchmark_config_hash(cfg.model_copy(update={"backend": "synthetic"}), "fp") != hashed


def test_what_a_backend_needs_comes_from_its_entry(toy: BackendSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "toy", replace(toy, model_file="always"))  # type: ignore[index]
    with pytest.raises(BackendError, match="the toy backend needs a model file"):
        make_backend(toy_config().benchmarking)
    monkeypatch.setitem(BACKENDS, "toy", replace(toy, server=True))  # type: ignore[index]
    with pytest.raises(BackendError, match="the toy backend needs the server's address"):
        make_backend(toy_config().benchmarking)
    monkeypatch.setitem(BACKENDS, "toy", replace(toy, formats=("onnx",)))  # type: ignore[index]
    with pytest.raises(ConfigError, match="backend: toy runs onnx models, not model_format: torchscript"):
        toy_config()


def test_the_local_backend_runs_the_runtime_its_format_registers(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    for fmt in FORMATS.values():
        backend = make_backend(BenchmarkingSection(model_format=fmt.name, device="cpu"), model_file=tmp_path / "m")
        assert type(backend) is resolve(fmt.in_process)
        backend.close()
