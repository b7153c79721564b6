"""The outputs of a TorchScript model that declares none, learned by a dry run, for a Triton deploy's config.

A model traced or scripted without podium's signature (or saved with ``outputs=[]``) says nothing of what it
returns, and Triton's config must name every output with its datatype and shape. podium knows the inputs (the
signature's, ``benchmarking.inputs``, or forward's argument names), so it runs the model on CPU on the inputs the
benchmark itself will send, at two batch sizes and two sequence widths, and reads the outputs off the results:

- names: the model's own (the keys of a returned dict, the fields of a returned named tuple), else ``OUTPUT__0``,
  ``OUTPUT__1`` ... in the order returned (Triton's libtorch naming; its Python backend takes any name);
- datatypes: the KServe V2 name of each tensor's dtype;
- shapes: a dimension that differs between the runs is ``-1`` (it follows the batch or the sequence); the first is
  always the batch.

Everything here is pure except :func:`dry_run`, which loads and runs the model with torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from podium.backends.base import InputSpec, reason_of
from podium.errors import BackendError

#: A tensor's dtype (as torch and numpy name it) -> its KServe V2 datatype.
DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "bfloat16": "BF16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}
#: The name of output ``i`` of a model that does not name its outputs (what Triton's libtorch backend expects).
POSITIONAL = "OUTPUT__{}"
#: What to declare instead, when podium cannot learn the outputs.
DECLARE_HINT = "declare them with podium.training.save_torchscript(module, path, inputs=[...], outputs=[...])"


@dataclass(frozen=True)
class Observed:
    """One output of one dry run: the model's own name for it (None when it has none), datatype and shape."""

    name: str | None
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """One dry run: the batch size and sequence width it was fed, and what came out, in order."""

    batch: int
    width: int
    outputs: tuple[Observed, ...]


class Point(NamedTuple):
    """Where one dry run is made: a batch size and a sequence width; ``sent`` when the benchmark sends exactly
    that shape (a configured batch size at ``max_length``), so the model must accept it."""

    batch: int
    width: int
    sent: bool


def probe_points(batch_sizes: Sequence[int], max_length: int, inputs: Sequence[InputSpec]) -> list[Point]:
    """The dry runs: the smallest configured batch at ``max_length``; then a second batch (the next configured
    size, else one more) unless an input fixes its batch; then a shorter width (half) unless no input has a
    dynamic sequence dimension or ``max_length`` is 1. Varying one at a time shows which dims follow the batch and
    which the sequence, and never sends a sequence longer than the benchmark does."""
    sizes = sorted(set(batch_sizes))
    first = sizes[0]
    points = [Point(first, max_length, True)]
    if all(spec.shape and spec.shape[0] == -1 for spec in inputs):
        points.append(Point(sizes[1], max_length, True) if len(sizes) > 1 else Point(first + 1, max_length, False))
    if max_length > 1 and any(-1 in spec.shape[1:] for spec in inputs):
        points.append(Point(first, max_length // 2, False))
    return points


def datatype_of(dtype: Any) -> str:
    """The KServe V2 datatype of a torch or numpy dtype (``torch.float32``, ``np.dtype('int64')``...)."""
    short = str(dtype).removeprefix("torch.")
    if short not in DATATYPES:
        raise BackendError(
            f"the model returns a tensor of dtype {short}, which Triton cannot describe; "
            f"supported: {', '.join(DATATYPES)}"
        )
    return DATATYPES[short]


def observe(out: Any, deploy: str) -> tuple[Observed, ...]:
    """What one call of the model returned, flattened the way a deploy format serves it: a tensor, a tuple or named
    tuple of tensors, and for ``python`` also a list of tensors or a dict of them by name (Triton's libtorch
    backend serves only a tensor or a tuple of tensors)."""
    if _is_tensor(out):
        named: list[tuple[str | None, Any]] = [(None, out)]
    elif isinstance(out, Mapping):
        named = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        fields = getattr(out, "_fields", None)
        named = list(zip(fields, out, strict=True)) if fields else [(None, v) for v in out]
    else:
        raise BackendError(f"the model returns a {type(out).__name__}, not tensors that Triton can serve")
    if deploy == "libtorch" and (isinstance(out, Mapping) or type(out) is list):
        kind = "dict" if isinstance(out, Mapping) else "list"
        raise BackendError(
            f"the model returns a {kind} of tensors, which Triton's libtorch backend cannot serve (a tensor or a "
            "tuple of tensors only); set benchmarking.triton.deploy: python"
        )
    if not named:
        raise BackendError("the model returns no outputs, so there is nothing to measure")
    seen = []
    for i, (name, value) in enumerate(named):
        if not _is_tensor(value):
            what = f"output {name!r}" if name else f"output {i}"
            raise BackendError(f"the model's {what} is a {type(value).__name__}, not a tensor that Triton can serve")
        seen.append(Observed(name, datatype_of(value.dtype), tuple(int(d) for d in value.shape)))
    return tuple(seen)


def merge(probes: Sequence[Probe]) -> list[InputSpec]:
    """The outputs the dry runs agree on: per output, the name (its own, else ``OUTPUT__<i>``), the datatype, and
    the shape with ``-1`` where the runs differ and for the batch. Refuses outputs that change in number, name,
    datatype or rank between runs, and outputs whose first dimension is not the batch (Triton batches on it)."""
    first = probes[0]
    for p in probes[1:]:
        if [(o.name, o.datatype, len(o.shape)) for o in p.outputs] != [
            (o.name, o.datatype, len(o.shape)) for o in first.outputs
        ]:
            raise BackendError(
                "the model's outputs change with its input shape "
                f"({_listing(first)} at batch {first.batch} x {first.width}, {_listing(p)} at batch {p.batch} x "
                f"{p.width}), so one Triton config cannot describe them; " + DECLARE_HINT
            )
    specs = []
    for i, out in enumerate(first.outputs):
        name = out.name or POSITIONAL.format(i)
        for p in probes:
            shape = p.outputs[i].shape
            if not shape or shape[0] != p.batch:
                raise BackendError(
                    f"the model's output {name!r} has shape {list(shape)} for a batch of {p.batch}: its first "
                    "dimension is not the batch, which Triton batches on; return the batch first"
                )
        dims = [-1] + [
            d if all(p.outputs[i].shape[k] == d for p in probes) else -1 for k, d in enumerate(out.shape) if k > 0
        ]
        specs.append(InputSpec(name, out.datatype, tuple(dims)))
    return specs


def describe(outputs: Sequence[InputSpec], probes: Sequence[Probe], skipped: Sequence[str] = ()) -> str:
    """The note written on the run, e.g. ``outputs derived by a dry run (CPU, batch x width 1x16, 2x16, 1x8):
    logits FP32 [-1,-1,5]``, with the runs the model refused that the benchmark does not make."""
    runs = ", ".join(f"{p.batch}x{p.width}" for p in probes)
    found = "; ".join(f"{o.name} {o.datatype} [{','.join(map(str, o.shape))}]" for o in outputs)
    return f"outputs derived by a dry run (CPU, batch x width {runs}): {found}" + "".join(
        f"; {s}, so its dims are taken as fixed" for s in skipped
    )


def dry_run(
    model_file: Path,
    declared: list[InputSpec] | None,
    batch_sizes: Sequence[int],
    max_length: int,
    deploy: str,
    seed: int = 0,
) -> tuple[list[InputSpec], list[InputSpec], str]:
    """Load the TorchScript model on CPU, run it at each :func:`probe_points` on the inputs the benchmark will send
    (those a Triton server reports for them: no vocabulary size, so token ids below podium's default), and return
    the inputs, the derived outputs and the note for the run. A run at a shape the benchmark sends that fails is
    refused with the model's own error in one line; one at a shape it does not send is left out (noted)."""
    import torch

    from podium.backends.inputs import build_inputs
    from podium.backends.torchscript import TorchScriptBackend

    local = TorchScriptBackend(model_file, "cpu", "fp32", declared)
    try:
        inputs = [InputSpec(s.name, s.datatype, s.shape) for s in local.prepare()]
        model = local.model
        probes: list[Probe] = []
        skipped: list[str] = []
        for point in probe_points(batch_sizes, max_length, inputs):
            arrays = build_inputs(inputs, point.batch, point.width, seed=seed)
            try:
                with torch.inference_mode():
                    out = model(*(torch.from_numpy(a) for a in arrays.values()))
            except Exception as exc:  # TorchScript raises torch.jit.Error, RuntimeError... with its traceback
                if not point.sent:
                    skipped.append(f"a run at {point.batch}x{point.width} failed ({reason_of(exc, 120)})")
                    continue
                sent = ", ".join(f"{k} {v.dtype} {list(v.shape)}" for k, v in arrays.items())
                raise BackendError(
                    f"the model declares no outputs, and a dry run to learn them on the inputs the benchmark sends "
                    f"({sent}) failed: {reason_of(exc)} (make benchmarking.batch_sizes, max_length and inputs fit "
                    "what the model accepts)"
                ) from None
            probes.append(Probe(point.batch, point.width, observe(out, deploy)))
    finally:
        local.close()
    outputs = merge(probes)
    return inputs, outputs, describe(outputs, probes, skipped)


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (Mapping, tuple, list))


def _listing(probe: Probe) -> str:
    return "[" + ", ".join(f"{o.name or '?'} {o.datatype} rank {len(o.shape)}" for o in probe.outputs) + "]"
