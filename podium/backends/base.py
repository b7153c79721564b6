"""The inference-backend port: prepare a model, describe its inputs, bind a batch, run it, describe the
hardware, tear down. Implementations, one module each, registered in :mod:`podium.core.backend_registry`:
``local`` (in-process, by the model's format: TorchScript with torch, ONNX with onnxruntime), ``triton`` (KServe
V2) and ``synthetic``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from podium.errors import BackendError

if TYPE_CHECKING:
    import numpy as np

    from podium.core.config import BenchmarkingSection


@dataclass(frozen=True)
class RuntimeRequest:
    """What a backend's runtime is built from (its registered ``runtime`` callable takes this)."""

    cfg: BenchmarkingSection
    #: The model file, when the backend needs one (``BackendSpec.model_file``).
    model_file: Path | None = None
    #: The inference server (the worker's ``PODIUM_TRITON_URL`` or ``podium bench --url``).
    url: str | None = None
    #: A model already on the server (``--model-name``); None: ``triton.model_name`` or the file deployed.
    model_name: str | None = None
    model_version: str = ""
    #: The name a deployed model gets (unique to the benchmark key).
    deployment_name: str = "podium-model"

    def declared_inputs(self) -> list[InputSpec] | None:
        """The inputs ``benchmarking.inputs`` declares (they win over the model's own), or None."""
        declared = [InputSpec(i.name, i.datatype, tuple(i.shape), i.vocab_size) for i in self.cfg.inputs or []]
        return declared or None


@dataclass(frozen=True)
class InputSpec:
    """One model input as KServe V2 describes it; -1 marks a dynamic dimension."""

    name: str
    datatype: str  # KServe V2 names: INT64, INT32, FP32, FP16, BF16, BOOL
    shape: tuple[int, ...]
    #: Token ids are drawn below this (from the model's signature; default 1000).
    vocab_size: int | None = None


@dataclass(frozen=True)
class HardwareInfo:
    """What was actually measured on: becomes the ``code.benchmark.device`` tag and part of benchmark.json."""

    summary: str  # one line, e.g. "NVIDIA H200 (driver 570.86) | torch 2.13.0"
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerStats:
    """A cumulative snapshot of server-side time (Triton statistics extension), in nanoseconds."""

    count: int
    queue_ns: int
    compute_ns: int


class InferenceBackend(Protocol):
    def prepare(self) -> list[InputSpec]:
        """Load or deploy the model and return its inputs. Raises BackendError with the reason."""
        ...

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        """Turn one batch into a ready request once; the returned call runs it and returns when done."""
        ...

    def stats(self) -> ServerStats | None:
        """Server-side statistics snapshot, or None where the server has none."""
        ...

    def describe(self) -> HardwareInfo: ...

    def notes(self) -> list[str]:
        """What the backend could not do and degraded around (e.g. no statistics extension)."""
        ...

    def close(self) -> None: ...


class InProcess:
    """What the in-process backends share: no server statistics, nothing degraded, a bound call tried once."""

    model_path: Any

    def stats(self) -> ServerStats | None:
        return None

    def notes(self) -> list[str]:
        return []

    def tried(self, call: Callable[[], object], inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        """``call`` after one run (untimed): a model that rejects these inputs fails here, naming their shapes."""
        try:
            call()
        except Exception as exc:  # torch and onnxruntime raise their own types for bad inputs
            shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in inputs.items()}
            why = reason_of(exc)
            if "out of range" in why or "out of bounds" in why:
                top = max((int(v.max()) for v in inputs.values() if v.dtype.kind in "iu" and v.size), default=0)
                why += (
                    f" (token ids up to {top} were sent: if the model's vocabulary is smaller, declare it with "
                    "vocab_size in benchmarking.inputs, or use test_data within it)"
                )
            raise BackendError(f"{self.model_path}: the model rejected inputs {shapes}: {why}") from None
        return call


def reason_of(exc: BaseException, limit: int = 300) -> str:
    """The line of an error that says what went wrong, cut at a word: the last line of a traceback the runtime
    put in its message (TorchScript's interpreter does: the cause is at the end), else the first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    traced = any(line.startswith(("Traceback", "The following operation failed")) for line in lines)
    text = lines[-1] if traced else lines[0]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"
