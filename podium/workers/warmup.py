"""Warm means warm: before a worker process takes its first request it imports every runtime it serves and
runs one tiny inference on each, so the first new model costs what any later new model costs (model load and
measurement). No MLflow write, no store opened: the store may not exist yet (training creates it).

What a worker serves: TorchScript when torch is installed, ONNX when onnxruntime is, Triton when the worker
has a server (``PODIUM_TRITON_URL``). A runtime that fails to warm is reported in the ready line and left to
the first request that needs it, which then fails with its own error as it always would.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: An ONNX graph ``logits = float(input_ids)`` (opset 13, 142 bytes): onnxruntime's tiny inference needs no
#: ``onnx`` package to build it.
TINY_ONNX = base64.b64decode(
    "CAgSBnBvZGl1bTp8CiQKCWlucHV0X2lkcxIGbG9naXRzIgRDYXN0KgkKAnRvGAGgAQISDXBvZGl1bS13YXJtdXBaIwoJaW5wdXRfaWRzEhYK"
    "FAgHEhAKBxIFYmF0Y2gKBRIDc2VxYiAKBmxvZ2l0cxIWChQIARIQCgcSBWJhdGNoCgUSA3NlcUIECgAQDQ=="
)
#: Runtimes a task must never be the first to import (the warm-up's job): checked after each task.
HEAVY_MODULES = ("torch", "onnxruntime", "tritonclient")
#: The modules a first request needs beside the runtimes: the measurement path and MLflow's artifact download.
REQUEST_PATH_MODULES = (
    "podium.workers.deps",
    "podium.backends.inputs",
    "podium.measurement.input_data",
    "mlflow.artifacts",
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.utils.search_logged_model_utils",
)


@dataclass
class Warmed:
    """What a worker process warmed: one line per runtime, and what failed."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        parts = self.done + [f"{f} (not warmed)" for f in self.failed]
        return f"{', '.join(parts) or 'no runtime'} in {self.seconds:.1f} s"


def warm_runtimes(triton_url: str | None, protocol: str = "http", timeout_s: float = 10.0) -> Warmed:
    """Import and exercise every runtime this worker serves; never raises."""
    t0 = time.monotonic()
    warmed = Warmed()
    for module in REQUEST_PATH_MODULES:
        _try(warmed, f"import {module}", functools.partial(_import, module))
    steps: list[tuple[str, Callable[[], str]]] = []
    if importlib.util.find_spec("torch") is not None:
        steps.append(("torchscript", _warm_torchscript))
    if importlib.util.find_spec("onnxruntime") is not None:
        steps.append(("onnx", _warm_onnx))
    if triton_url and importlib.util.find_spec("tritonclient") is not None:
        steps.append(("triton", lambda: _warm_triton(triton_url, protocol, timeout_s)))
    for name, step in steps:
        _try(warmed, name, step)
    warmed.seconds = time.monotonic() - t0
    return warmed


def _import(module: str) -> None:
    importlib.import_module(module)


def _try(warmed: Warmed, name: str, step: Callable[[], str | None]) -> None:
    try:
        what = step()
    except Exception as exc:  # a runtime that cannot warm is the first request's problem, not the worker's
        log.warning("Warming %s failed: %s: %s", name, type(exc).__name__, str(exc).splitlines()[0][:300])
        warmed.failed.append(name)
        return
    if what:
        warmed.done.append(what)


def _tiny_inference(model_file: Path, model_format: str) -> None:
    """One inference through podium's own backend path, as a request would run it."""
    from podium.backends.factory import make_backend
    from podium.backends.inputs import build_inputs
    from podium.core.config import BenchmarkingSection

    cfg = BenchmarkingSection(backend="local", model_format=model_format, device="cpu", max_length=8)
    backend = make_backend(cfg, model_file=model_file)
    try:
        call = backend.bind(build_inputs(backend.prepare(), 1, 8))
        call()
        call()
    finally:
        backend.close()


def _warm_torchscript() -> str:
    import torch

    from podium.backends.torchscript import save_scripted, torchscript_on_purpose

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(16, 4)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.embed(input_ids).sum(-1)

    with tempfile.TemporaryDirectory(prefix="podium-warm-") as tmp:
        with torchscript_on_purpose():
            scripted = torch.jit.script(Tiny())
        path = save_scripted(
            scripted,
            Path(tmp) / "model.pt",
            {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "vocab_size": 16}]},
        )
        _tiny_inference(path, "torchscript")
    return f"torchscript (torch {torch.__version__})"


def _warm_onnx() -> str:
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="podium-warm-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(TINY_ONNX)
        _tiny_inference(path, "onnx")
    return f"onnx (onnxruntime {onnxruntime.__version__})"


def _warm_triton(url: str, protocol: str, timeout_s: float) -> str:
    """The client library imported and the worker's server asked whether it is ready (no model deployed)."""
    if protocol == "grpc":
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(url)
        ready = client.is_server_ready(client_timeout=timeout_s)
    else:
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        ready = client.is_server_ready()
    client.close()
    return f"triton ({protocol} {url}: {'ready' if ready else 'not ready yet'})"


def runtimes_loaded() -> frozenset[str]:
    """Which heavy runtimes this process has imported (compared before and after a task)."""
    return frozenset(m for m in HEAVY_MODULES if m in sys.modules)
