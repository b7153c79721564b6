"""An MLflow model folder (``MLmodel`` + flavor data) made into the file a backend loads.

``onnx`` flavor: its ``.onnx`` file as it is. ``pytorch`` flavor (``mlflow.pytorch.log_model``): loaded with
MLflow's flavor module; a scripted or traced module is saved as TorchScript; an eager ``nn.Module`` is traced on
the benchmark's inputs for TorchScript (local, Triton libtorch/python) or exported for ONNX; a ``torch.export``
program (MLflow 3's ``pt2`` format) is first made a module. What was done is returned as one note, recorded on
the benchmark run (``benchmark.json`` notes and the ``code.benchmark.conversion`` tag).
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from podium.core.config import BenchmarkingSection
from podium.errors import ConversionError

MLMODEL = "MLmodel"
#: Batch size of the example inputs an eager module is traced or exported with (2: a batch of 1 may be
#: specialised away by tracing).
TRACE_BATCH = 2


def is_mlflow_model(path: Path) -> bool:
    return path.is_dir() and (path / MLMODEL).is_file()


def materialize(folder: Path, cfg: BenchmarkingSection, dest: Path) -> tuple[Path, str]:
    """The model file to measure from the MLflow model in ``folder`` (written under ``dest``), and the note
    saying what was done."""
    try:
        flavors = (yaml.safe_load((folder / MLMODEL).read_text()) or {}).get("flavors") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConversionError(f"{folder / MLMODEL} is not a readable MLflow model description: {exc}") from None
    if "onnx" in flavors:
        onnx_file = folder / str(flavors["onnx"].get("data", "model.onnx"))
        if cfg.model_format != "onnx":
            raise ConversionError(
                "the run's model is an MLflow ONNX model; set benchmarking.model_format: onnx (podium bench "
                "--model-format onnx) to measure it"
            )
        return onnx_file, "MLflow onnx model measured as logged"
    if "pytorch" not in flavors:
        raise ConversionError(
            f"the run's MLflow model has flavors {', '.join(sorted(flavors)) or 'none'}; podium measures pytorch "
            "and onnx models (mlflow.pytorch.log_model / mlflow.onnx.log_model)"
        )
    module = _load_pytorch(folder)
    return convert(module, cfg, dest)


def _load_pytorch(folder: Path) -> Any:
    try:
        import mlflow.pytorch
    except ImportError as exc:
        raise ConversionError(
            f"loading an MLflow pytorch model needs MLflow's pytorch flavor ({exc}); install podium[torch]"
        ) from None
    try:
        model = mlflow.pytorch.load_model(str(folder), map_location="cpu")
    except Exception as exc:  # unpickling a class the worker cannot import, a torch version mismatch, ...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"cannot load the run's MLflow pytorch model: {first}; the worker needs the model's code and torch "
            "version (mlflow.pytorch.log_model(..., code_paths=[...]))"
        ) from None
    module = getattr(model, "module", None)
    if callable(module) and type(model).__name__ == "ExportedProgram":  # a program not yet made a module
        return module()
    return model  # MLflow 3's pt2 format loads as the program's module (a GraphModule), fixed in eval mode


def convert(module: Any, cfg: BenchmarkingSection, dest: Path) -> tuple[Path, str]:
    """``module`` saved for ``cfg.model_format``: TorchScript (scripted/traced kept, eager traced) or ONNX."""
    import torch

    from podium.backends.local import SIGNATURE_FILE, _torchscript_on_purpose

    dest.mkdir(parents=True, exist_ok=True)
    if isinstance(module, torch.jit.ScriptModule):
        if cfg.model_format == "onnx":
            raise ConversionError(
                "the run's model is a TorchScript module; measure it with benchmarking.model_format: torchscript"
            )
        path = dest / "model.pt"
        with _torchscript_on_purpose():
            torch.jit.save(module, str(path))
        return path, "MLflow pytorch model (a TorchScript module) saved as TorchScript as it is"
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"the run's MLflow pytorch model is a {type(module).__name__}, not a torch module")
    specs = _input_specs(module, cfg)
    example = _example(specs, cfg)
    shown = ", ".join(f"{s.name} {s.datatype}[{TRACE_BATCH}x{cfg.max_length}]" for s in specs)
    what = _to_eval(module)
    if cfg.model_format == "onnx":
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
            raise ConversionError(f"cannot export the run's {what} to ONNX on inputs {shown}: {_first(exc)}") from None
        return path, f"{what} from the run's MLflow model exported to ONNX on inputs {shown}"
    path = dest / "model.pt"
    signature = {"inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]}
    for entry, spec in zip(signature["inputs"], specs, strict=True):
        if spec.vocab_size:
            entry["vocab_size"] = spec.vocab_size
    try:
        with _torchscript_on_purpose(), torch.no_grad():
            traced = torch.jit.trace(module, example)
            torch.jit.save(traced, str(path), _extra_files={SIGNATURE_FILE: json.dumps(signature)})
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(
            f"cannot trace the run's {what} on inputs {shown}: {_first(exc)}; log a scripted or traced module "
            "instead (mlflow.pytorch.log_model(torch.jit.trace(model, example), ...))"
        ) from None
    return path, f"{what} from the run's MLflow model traced to TorchScript on inputs {shown}"


def _to_eval(module: Any) -> str:
    """Put ``module`` in eval mode; what it is, for the note: an eager module, or a ``torch.export`` program's
    module (MLflow 3's pt2 format), whose mode was fixed at export and which refuses ``eval()``."""
    try:
        module.eval()
    except NotImplementedError:
        return "torch.export program (pt2)"
    return "eager nn.Module"


def _input_specs(module: Any, cfg: BenchmarkingSection) -> list[Any]:
    from podium.backends.base import InputSpec
    from podium.backends.local import conventional_inputs, conventional_kind, embedding_rows, inputs_snippet

    if cfg.inputs:
        return [InputSpec(i.name, i.datatype, tuple(i.shape), i.vocab_size) for i in cfg.inputs]
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    args = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    specs = conventional_inputs(args, embedding_rows(module))
    if specs is None:
        unknown = [a for a in args if conventional_kind(a) is None] or ["(no named arguments)"]
        raise ConversionError(
            f"cannot tell how to fill the run's model forward({', '.join(args)}) to trace it "
            f"({', '.join(unknown)}); declare benchmarking.inputs in benchmark.yaml: "
            + inputs_snippet(args).replace("\n", " ")
        )
    return specs


def _example(specs: list[Any], cfg: BenchmarkingSection) -> tuple[Any, ...]:
    import torch

    from podium.backends.inputs import build_inputs

    arrays = build_inputs(specs, TRACE_BATCH, cfg.max_length, None, cfg.seed)
    return tuple(torch.from_numpy(a) for a in arrays.values())


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
