"""Model inputs built once, before timing: batches of test data in a fixed order, or deterministic synthetic data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from podium.backends.base import InputSpec
from podium.errors import BackendError

#: Token ids are drawn below this when the model's signature does not say its vocabulary size.
DEFAULT_VOCAB = 1000
#: A measurement cycles through at most this many distinct batches of test data.
MAX_DISTINCT_BATCHES = 64

NUMPY_DTYPES = {
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class PlannedBatch:
    """One request's batch: its sequences (None: synthetic, all ``width`` long) and the length it is padded to."""

    rows: list[list[int]] | None
    width: int

    @property
    def longest(self) -> int:
        """The longest real sequence: what the request's cost follows."""
        return max(map(len, self.rows)) if self.rows else self.width


def plan_batches(
    rows: Sequence[Sequence[int]] | None,
    batch_size: int,
    max_length: int,
    padding: str = "max_length",
    seed: int = 0,
    limit: int = MAX_DISTINCT_BATCHES,
) -> list[PlannedBatch]:
    """The requests a measurement cycles through, in a fixed order: test data rows shuffled by ``seed`` and cut
    into batches (the last one filled from the start), each truncated to ``max_length`` and padded to it
    (``max_length``) or to its own longest sequence (``longest``, as a serving tokenizer pads); at most
    ``limit`` distinct batches. Without test data, one synthetic batch of ``max_length``."""
    if not rows:
        return [PlannedBatch(None, max_length)]
    order = np.random.default_rng(seed).permutation(len(rows))
    count = min(limit, -(-len(rows) // batch_size))
    plan = []
    for k in range(count):
        picked = [list(rows[order[(k * batch_size + j) % len(rows)]])[:max_length] for j in range(batch_size)]
        plan.append(PlannedBatch(picked, max(map(len, picked)) if padding == "longest" else max_length))
    return plan


def build_inputs(
    specs: Sequence[InputSpec],
    batch_size: int,
    max_length: int,
    rows: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One batch for every input. Dynamic dims: the first is the batch, the others ``max_length``."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        dtype = NUMPY_DTYPES.get(spec.datatype)
        if dtype is None:
            raise BackendError(
                f"input {spec.name!r} has datatype {spec.datatype}, which podium cannot fill; "
                f"supported: {', '.join(NUMPY_DTYPES)}"
            )
        shape = _concrete_shape(spec, batch_size, max_length)
        out[spec.name] = _fill(spec, shape, np.dtype(dtype), rows, rng)
    return out


def _concrete_shape(spec: InputSpec, batch_size: int, max_length: int) -> tuple[int, ...]:
    if not spec.shape:
        raise BackendError(f"input {spec.name!r} is a scalar; podium benchmarks batched tensor inputs")
    if spec.shape[0] not in (-1, batch_size):  # never time another batch than the one reported
        raise BackendError(
            f"input {spec.name!r} has a fixed first (batch) dimension of {spec.shape[0]}, so a batch of {batch_size} "
            f"cannot be sent; export the model with a dynamic batch axis, or set benchmarking.batch_sizes: "
            f"[{spec.shape[0]}]"
        )
    dims = [batch_size]
    dims += [max_length if d == -1 else d for d in spec.shape[1:]]
    if any(d <= 0 for d in dims):
        raise BackendError(f"input {spec.name!r} has an unusable shape {spec.shape}")
    return tuple(dims)


def _fill(spec, shape, dtype, rows, rng) -> np.ndarray:
    name = spec.name.lower()
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_ or "mask" in name:
        return _mask(shape, dtype, rows)
    if "type" in name or "position" in name:
        return np.zeros(shape, dtype=dtype)
    if rows:
        batch = np.zeros(shape, dtype=dtype)
        width = shape[-1]
        flat = batch.reshape(-1, width)
        for i in range(flat.shape[0]):
            row = list(rows[i % len(rows)])[:width]
            flat[i, : len(row)] = row
        return batch
    high = max(2, min(spec.vocab_size or DEFAULT_VOCAB, int(np.iinfo(dtype).max)))
    return rng.integers(1, high, size=shape, dtype=dtype)


def _mask(shape: tuple[int, ...], dtype: np.dtype, rows: Sequence[Sequence[int]] | None) -> np.ndarray:
    """Ones over each sequence's real tokens (all of them without test data), zeros over the padding."""
    mask = np.ones(shape, dtype=dtype)
    if rows and len(shape) >= 2:
        width = shape[-1]
        flat = mask.reshape(-1, width)
        for i in range(flat.shape[0]):
            flat[i, min(len(rows[i % len(rows)]), width) :] = 0
    return mask
