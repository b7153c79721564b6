"""``save_torchscript``: the model a training script logs, saved as TorchScript with the signature podium reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium.backends.base import InputSpec
from podium.backends.torchscript import save_scripted, torchscript_on_purpose
from podium.errors import BackendError


def save_torchscript(
    module: Any, path: Path, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]] | None = None
) -> Path:
    """Save ``module`` as TorchScript with its input (and output) signature, for podium to fill and for a
    Triton deploy to describe. A scripted or traced module is kept as it is; one that cannot be scripted (its
    source unreadable, as for a class defined in a notebook cell or on stdin) is traced with inputs built
    from ``inputs``."""
    import torch

    with torchscript_on_purpose():
        if isinstance(module, torch.jit.ScriptModule):
            scripted = module
        else:
            try:
                scripted = torch.jit.script(module)
            except Exception as exc:  # OSError (no source), torch.jit.frontend errors (unsupported Python)
                scripted = _trace(module, inputs, exc)
    return save_scripted(scripted, path, {"inputs": inputs, "outputs": outputs or []})


def _trace(module: Any, inputs: list[dict[str, Any]], script_error: Exception) -> Any:
    import torch

    from podium.backends.inputs import build_inputs

    try:
        specs = [InputSpec(i["name"], i["datatype"], tuple(i["shape"]), i.get("vocab_size")) for i in inputs]
    except (KeyError, TypeError) as exc:
        raise BackendError(
            f"cannot script the module ({str(script_error).splitlines()[0][:200]}), and cannot trace it without "
            f"inputs: pass inputs=[{{'name': ..., 'datatype': 'INT64', 'shape': [-1, -1]}}] ({exc})"
        ) from None
    example = tuple(torch.from_numpy(a) for a in build_inputs(specs, 2, 8).values())
    was_training = getattr(module, "training", False)
    module.eval()
    try:
        return torch.jit.trace(module, example)
    except Exception as exc:
        raise BackendError(
            f"cannot script the module ({str(script_error).splitlines()[0][:200]}) nor trace it with inputs "
            f"{[(s.name, s.datatype, s.shape) for s in specs]} ({str(exc).splitlines()[0][:200]}); "
            "pass torch.jit.trace(module, example_inputs) yourself"
        ) from None
    finally:
        module.train(was_training)
