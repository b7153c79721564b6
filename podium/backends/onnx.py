"""ONNX, the ``onnx`` model format: its signature, its export from torch, and its runtime in this process for the
``local`` backend: onnxruntime, on CPU or CUDA (``pip install 'podium[onnx]'``).

The inputs and outputs come from the graph itself (names, element types, dynamic dims as -1); token id inputs
stay below the vocabulary when an embedding table (a ``Gather`` over an initializer) says its size, which is
read with the ``onnx`` package when it is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from podium.backends.base import HardwareInfo, InProcess, InputSpec, reason_of
from podium.backends.hardware import cpu_model, nvidia_driver
from podium.backends.host_cores import affinity
from podium.backends.threads import set_thread_env
from podium.errors import BackendError, ConversionError

#: onnxruntime element types -> podium (KServe V2) datatypes.
DATATYPES = {
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int16)": "INT16",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(bool)": "BOOL",
}
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files; ONNX models are protobuf (never a zip)."""
    import zipfile

    return zipfile.is_zipfile(path)


def _specs(args: list[Any], vocab: Mapping[str, int], where: Path) -> list[InputSpec]:
    specs = []
    for arg in args:
        datatype = DATATYPES.get(arg.type)
        if datatype is None:
            raise BackendError(f"{where}: {arg.name!r} is a {arg.type}, which podium cannot fill or read")
        shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or []))
        specs.append(InputSpec(arg.name, datatype, shape, vocab.get(arg.name)))
    return specs


def embedding_sizes(path: Path) -> dict[str, int]:
    """Graph input -> rows of the initializer a ``Gather`` indexes with it (its vocabulary); empty without
    the ``onnx`` package or such a node."""
    try:
        import onnx
    except ImportError:
        return {}
    graph = onnx.load(str(path), load_external_data=False).graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    sizes: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in inputs:
            dims = tables.get(node.input[0])
            if dims and len(dims) == 2:
                sizes.setdefault(node.input[1], int(dims[0]))
    return sizes


def _session(path: Path, providers: list[str], threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    if threads is not None:  # benchmarking.threads; inter-op only matters in its parallel mode, left sequential
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        reason = reason_of(exc)
        if "external data" in reason.lower():
            raise BackendError(
                f"{path}: its weights are in a separate file that is not beside it ({reason}); log that file "
                f"next to the model (mlflow.log_artifact(...'{path.name}.data', 'model')) or export a single file "
                "with torch.onnx.export(..., external_data=False)"
            ) from None
        raise BackendError(f"{path} is not a loadable ONNX model: {reason}") from None


def onnx_signature(path: Path) -> tuple[list[InputSpec], list[InputSpec]]:
    """The model's inputs and outputs, read from its graph (for Triton deploys)."""
    session = _session(Path(path), [CPU])
    vocab = embedding_sizes(Path(path))
    return _specs(session.get_inputs(), vocab, Path(path)), _specs(session.get_outputs(), {}, Path(path))


class OnnxBackend(InProcess):
    def __init__(
        self,
        model_path: Path,
        device: str | None = None,
        precision: str = "fp32",
        declared: list[InputSpec] | None = None,
        threads: int = 1,
    ):
        import onnxruntime as ort

        #: The runtime's threads (``benchmarking.threads``): the session's intra-op threads.
        self.threads = threads

        if precision != "fp32":
            raise BackendError(
                f"precision {precision} is not applied to ONNX models: export the model in that precision "
                "and benchmark it with precision: fp32"
            )
        self._ort = ort
        self.model_path = Path(model_path)
        self.declared = declared
        available = ort.get_available_providers()
        if device == "cuda" and CUDA not in available:
            raise BackendError(
                "device 'cuda' was requested but onnxruntime has no CUDA provider here "
                f"(available: {', '.join(available)}); install onnxruntime-gpu on a CUDA worker"
            )
        self.device = device or ("cuda" if CUDA in available else "cpu")
        self.providers = [CUDA, CPU] if self.device == "cuda" else [CPU]
        self.session: Any = None

    def prepare(self) -> list[InputSpec]:
        if is_torchscript(self.model_path):
            raise BackendError(
                f"{self.model_path} is a TorchScript archive, not ONNX: set benchmarking.model_format: torchscript"
            )
        set_thread_env(self.threads)
        self.session = _session(self.model_path, self.providers, self.threads)
        if self.declared:
            return self.declared
        return _specs(self.session.get_inputs(), embedding_sizes(self.model_path), self.model_path)

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        session, feeds = self.session, {k: np.ascontiguousarray(v) for k, v in inputs.items()}

        def call() -> object:
            return session.run(None, feeds)  # returns when the outputs are on the host: the work is done

        return self.tried(call, inputs)

    def describe(self) -> HardwareInfo:
        version = self._ort.__version__
        if self.device == "cuda":
            driver = nvidia_driver()
            summary = f"CUDA (driver {driver}) | onnxruntime {version}"
            details: dict[str, Any] = {"kind": "cuda", "driver": driver}
        else:
            cpu = cpu_model()
            summary = f"{cpu} | onnxruntime {version}"
            details = {"kind": "cpu", "cpu": cpu}
        threads = {"threads": self.threads, "affinity": affinity()}
        return HardwareInfo(
            summary, {**details, **threads, "onnxruntime": version, "backend": "local", "format": "onnx"}
        )

    def close(self) -> None:
        self.session = None


def from_torch(
    module: Any, specs: list[InputSpec], example: tuple[Any, ...], dest: Path, what: str, shown: str
) -> tuple[Path, str]:
    """An eager torch module exported to ONNX under ``dest`` on ``example`` (its inputs ``specs``, batch and
    sequence dimensions dynamic), and the note saying so; a TorchScript module is refused (it stays TorchScript).
    ``what`` names the module, ``shown`` its example inputs."""
    import warnings

    import torch

    from podium.backends.torchscript import first_line

    if isinstance(module, torch.jit.ScriptModule):
        raise ConversionError(
            "the run's model is a TorchScript module; measure it with benchmarking.model_format: torchscript"
        )
    path = dest / "model.onnx"
    names = [s.name for s in specs]
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with warnings.catch_warnings():  # the exporter's own deprecation and rename notices
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=names,
                output_names=["output"],
                dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise ConversionError(f"cannot export the run's {what} to ONNX on inputs {shown}: {first_line(exc)}") from None
    return path, f"{what} from the run's MLflow model exported to ONNX on inputs {shown}"
