"""An MLflow model folder (``MLmodel`` + flavor data) made into the file a backend loads.

``onnx`` flavor: its ``.onnx`` file as it is. ``pytorch`` flavor (``mlflow.pytorch.log_model``): loaded with
MLflow's flavor module; a scripted or traced module is saved as TorchScript; an eager ``nn.Module`` is traced on
the benchmark's inputs for TorchScript (local, Triton libtorch/python) or exported for ONNX; a ``torch.export``
program (MLflow 3's ``pt2`` format) is first made a module. What was done is returned as one note, recorded on
the benchmark run (``benchmark.json`` notes and the ``code.benchmark.conversion`` tag).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from podium.core.backend_registry import FORMATS, format_spec
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
    for fmt in FORMATS.values():  # a flavor that holds a format's own file: measured as logged
        if fmt.mlflow_flavor is not None and fmt.mlflow_flavor in flavors:
            if cfg.model_format != fmt.name:
                raise ConversionError(
                    f"the run's model is an MLflow {fmt.mlflow_flavor} model; set benchmarking.model_format: "
                    f"{fmt.name} (podium bench --model-format {fmt.name}) to measure it"
                )
            data = str(flavors[fmt.mlflow_flavor].get("data", f"model{fmt.suffix}"))
            return folder / data, f"MLflow {fmt.mlflow_flavor} model measured as logged"
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
    """``module`` saved in ``cfg.model_format`` by the format's own ``from_torch`` (TorchScript: scripted or
    traced kept, eager traced; ONNX: eager exported)."""
    import torch

    from podium.backends.factory import resolve

    fmt = format_spec(cfg.model_format)
    if fmt.from_torch is None:
        raise ConversionError(f"podium cannot save the run's MLflow pytorch model as {fmt.label}; log it as such")
    dest.mkdir(parents=True, exist_ok=True)
    save = resolve(fmt.from_torch)
    if isinstance(module, torch.jit.ScriptModule):
        return save(module, [], (), dest, "TorchScript module", "")
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"the run's MLflow pytorch model is a {type(module).__name__}, not a torch module")
    specs = _input_specs(module, cfg)
    example = _example(specs, cfg)
    shown = ", ".join(f"{s.name} {s.datatype}[{TRACE_BATCH}x{cfg.max_length}]" for s in specs)
    what = _to_eval(module)
    return save(module, specs, example, dest, what, shown)


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
    from podium.backends.torchscript import conventional_inputs, conventional_kind, embedding_rows, inputs_snippet

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
