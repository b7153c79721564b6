"""TorchScript, the ``torchscript`` model format: its file, its signature, and its runtime in this process (torch,
on CPU or CUDA), which the ``local`` backend runs it with.

The model file may carry its signature as an extra file ``podium_signature.json``
(``{"inputs": [{"name", "datatype", "shape", "vocab_size"?}]}``), written by :func:`save_scripted` (training
code calls ``podium.training.save_torchscript``). Without it (a model traced or scripted elsewhere), the inputs
come from the names of ``forward``'s arguments, as Transformers-style token models name them: ``input_ids``
(token ids below the vocabulary size read from the model's embedding table), ``token_type_ids`` (zeros) and
``attention_mask`` (ones over each sequence's real tokens), all INT64 ``[-1, -1]``; any other name is an
error that names it and says how to declare the inputs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from podium.backends.base import HardwareInfo, InProcess, InputSpec, reason_of
from podium.backends.hardware import cpu_model, nvidia_driver
from podium.backends.host_cores import affinity
from podium.backends.threads import apply_torch_threads
from podium.errors import BackendError, ConversionError

SIGNATURE_FILE = "podium_signature.json"


@contextmanager
def torchscript_on_purpose() -> Iterator[None]:
    """torch 2.13 deprecates TorchScript; Triton's libtorch backend still loads exactly that, so podium
    uses it on purpose and silences only that warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*TorchScript.*deprecated", category=DeprecationWarning)
        yield


_PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def save_scripted(scripted: Any, path: Path, signature: Mapping[str, Any]) -> Path:
    """Write a scripted or traced module to ``path`` with its signature (``{"inputs": [...], "outputs": [...]}``)
    stored in the archive."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torchscript_on_purpose():
        torch.jit.save(scripted, str(path), _extra_files={SIGNATURE_FILE: json.dumps(signature)})
    return path


def inputs_snippet(args: list[str]) -> str:
    """The benchmark.yaml lines that declare ``args`` (datatypes to be checked by the user)."""
    lines = ["benchmarking:", "  inputs:"]
    for a in args:
        datatype = "INT64" if conventional_kind(a) else "FP32"
        lines.append(f"    - {{name: {a}, datatype: {datatype}, shape: [-1, -1]}}")
    return "\n".join(lines)


def conventional_kind(arg: str) -> str | None:
    """How a forward argument is filled by its name: token ids, token types, a mask, or None (unknown)."""
    name = arg.lower()
    if "mask" in name:
        return "mask"
    if "type" in name:
        return "types"
    if "ids" in name or "token" in name or name in ("x", "input", "inputs"):
        return "ids"
    return None


def conventional_inputs(args: list[str], vocab_size: int | None) -> list[InputSpec] | None:
    """Inputs of a model saved without podium's signature, from the names of its forward arguments (as
    Transformers-style token classifiers name them); None when one of them is not a known name."""
    if not args or any(conventional_kind(a) is None for a in args):
        return None
    return [InputSpec(a, "INT64", (-1, -1), vocab_size if conventional_kind(a) == "ids" else None) for a in args]


def embedding_rows(model: Any) -> int | None:
    """The vocabulary size of a token model: the rows of its first embedding table (a 2-D parameter whose
    name says embedding), or None."""
    try:
        for name, parameter in model.named_parameters():
            if "embed" in name.lower() and len(parameter.shape) == 2:
                return int(parameter.shape[0])
    except (AttributeError, RuntimeError):
        return None
    return None


def parse_signature(raw: str | bytes, where: Path) -> tuple[list[InputSpec], list[InputSpec]]:
    try:
        doc = json.loads(raw)
        return tuple(  # type: ignore[return-value]
            [InputSpec(i["name"], i["datatype"], tuple(i["shape"]), i.get("vocab_size")) for i in doc.get(kind, [])]
            for kind in ("inputs", "outputs")
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackendError(f"{where}: {SIGNATURE_FILE} is malformed: {exc}") from None


def archive_extra(path: Path, filename: str) -> bytes | None:
    """An extra file saved in a TorchScript zip (``torch.jit.save(..., _extra_files=...)``), read without
    loading torch; None when the archive has none. Raises ``OSError`` / ``zipfile.BadZipFile`` for a bad file."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(f"/extra/{filename}"):
                return archive.read(name)
    return None


def read_signature(path: Path) -> tuple[list[InputSpec], list[InputSpec]] | None:
    """The signature stored in a TorchScript zip, read without loading torch (for Triton deploys)."""
    import zipfile

    try:
        raw = archive_extra(path, SIGNATURE_FILE)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BackendError(f"{path} is not a TorchScript archive: {exc}") from None
    return parse_signature(raw, Path(path)) if raw is not None else None


class TorchScriptBackend(InProcess):
    """A TorchScript model run with torch in this process."""

    def __init__(
        self,
        model_path: Path,
        device: str | None = None,
        precision: str = "fp32",
        declared: list[InputSpec] | None = None,
        threads: int = 1,
    ):
        import torch

        #: The runtime's threads (``benchmarking.threads``), set in :meth:`prepare`, before each measurement.
        self.threads = threads
        #: Inputs declared in ``benchmarking.inputs`` / ``podium bench --inputs``: they win over the model's.
        self.declared = declared
        self._torch = torch
        self.model_path = Path(model_path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendError("device 'cuda' was requested but this worker has no CUDA device")
        self.dtype = getattr(torch, _PRECISIONS[precision])
        self.model: Any = None

    def prepare(self) -> list[InputSpec]:
        torch = self._torch
        if self.model_path.suffix == ".onnx":
            raise BackendError(
                f"{self.model_path} is an ONNX model: set benchmarking.model_format: onnx "
                "(or podium bench --model-format onnx)"
            )
        apply_torch_threads(self.threads)
        extra = {SIGNATURE_FILE: ""}
        try:
            with torchscript_on_purpose():
                model = torch.jit.load(str(self.model_path), map_location=self.device, _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for a bad artifact
            raise BackendError(f"{self.model_path} is not a loadable TorchScript model: {reason_of(exc)}") from None
        model.eval()
        if self.dtype != torch.float32:
            model = model.to(self.dtype)
        self.model = model
        return self._signature(model, extra[SIGNATURE_FILE])

    def _signature(self, model: Any, raw: str | bytes) -> list[InputSpec]:
        if self.declared:
            return self.declared
        if raw:
            return parse_signature(raw, self.model_path)[0]
        args = [a.name for a in model.forward.schema.arguments[1:]]
        specs = conventional_inputs(args, embedding_rows(model))
        if specs is None:
            unknown = [a for a in args if conventional_kind(a) is None]
            raise BackendError(
                f"{self.model_path}: cannot tell how to fill forward({', '.join(args)}): podium fills arguments "
                f"named like input_ids, token_type_ids and attention_mask, not {', '.join(map(repr, unknown))}. "
                "Declare the inputs in benchmark.yaml:\n" + inputs_snippet(args) + "\nor with podium bench "
                f"--inputs {','.join(f'{a}:FP32:-1x-1' for a in args)} (datatypes: INT64, INT32, FP32, FP16, BOOL, ...)"
            )
        return specs

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        torch = self._torch
        tensors = []
        for array in inputs.values():
            t = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            tensors.append(t.to(self.dtype) if t.is_floating_point() else t)
        model, cuda = self.model, self.device == "cuda"

        def call() -> object:
            with torch.inference_mode():
                out = model(*tensors)
            if cuda:
                torch.cuda.synchronize()  # the clock is read after this returns
            return out

        return self.tried(call, inputs)

    def describe(self) -> HardwareInfo:
        torch = self._torch
        if self.device == "cuda":
            name = torch.cuda.get_device_name(0)
            driver = nvidia_driver()
            summary = f"{name} (driver {driver}, CUDA {torch.version.cuda}) | torch {torch.__version__}"
            details = {"kind": "cuda", "gpu": name, "driver": driver, "cuda": torch.version.cuda}
        else:
            cpu = cpu_model()
            summary = f"{cpu} ({torch.get_num_threads()} threads) | torch {torch.__version__}"
            details = {"kind": "cpu", "cpu": cpu}
        threads = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
        return HardwareInfo(
            summary, {**details, **threads, "affinity": affinity(), "torch": torch.__version__, "backend": "local"}
        )

    def close(self) -> None:
        self.model = None


def from_torch(
    module: Any, specs: list[InputSpec], example: tuple[Any, ...], dest: Path, what: str, shown: str
) -> tuple[Path, str]:
    """A torch module saved as TorchScript under ``dest``: a scripted or traced one as it is, an eager one traced
    on ``example`` (its inputs ``specs``); and the note saying what was done. ``what`` names the module, ``shown``
    its example inputs."""
    import torch

    path = dest / "model.pt"
    if isinstance(module, torch.jit.ScriptModule):
        with torchscript_on_purpose():
            torch.jit.save(module, str(path))
        return path, "MLflow pytorch model (a TorchScript module) saved as TorchScript as it is"
    inputs: list[dict[str, Any]] = [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]
    for entry, spec in zip(inputs, specs, strict=True):
        if spec.vocab_size:
            entry["vocab_size"] = spec.vocab_size
    try:
        with torchscript_on_purpose(), torch.no_grad():
            traced = torch.jit.trace(module, example)
        save_scripted(traced, path, {"inputs": inputs})
    except Exception as exc:
        raise ConversionError(
            f"cannot trace the run's {what} on inputs {shown}: {first_line(exc)}; log a scripted or traced module "
            "instead (mlflow.pytorch.log_model(torch.jit.trace(model, example), ...))"
        ) from None
    return path, f"{what} from the run's MLflow model traced to TorchScript on inputs {shown}"


def first_line(exc: BaseException) -> str:
    """The first line of an error (at most 300 characters), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
