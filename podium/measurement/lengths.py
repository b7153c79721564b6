"""Sequence lengths of a measurement's requests, and latency by length: pure functions over the plan and samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from podium.backends.inputs import PlannedBatch


def length_profile(
    plan: Sequence[PlannedBatch], samples_ns: Sequence[int], first_used: int, padding: str
) -> dict[str, Any]:
    """Token counts of the planned sequences of test data (p50, p90, max), the lengths requests were padded to, and the
    p50 latency of the timed requests per quartile of their longest sequence (request ``first_used + j`` used
    batch ``(first_used + j) % len(plan)``)."""
    tokens = [len(r) for batch in plan for r in batch.rows or ()]
    widths = [batch.width for batch in plan]
    profile: dict[str, Any] = {
        "padding": padding,
        "sequences": len(tokens),
        "p50_tokens": float(np.percentile(tokens, 50)),
        "p90_tokens": float(np.percentile(tokens, 90)),
        "max_tokens": max(tokens),
        "padded_to": {"min": min(widths), "max": max(widths), "distinct_batches": len(plan)},
    }
    if samples_ns:
        lengths = np.array([plan[(first_used + j) % len(plan)].longest for j in range(len(samples_ns))])
        profile["by_length_quartile"] = latency_by_quartile(lengths, np.asarray(samples_ns) / 1e6)
    return profile


def latency_by_quartile(lengths: np.ndarray, latencies_ms: np.ndarray) -> list[dict[str, Any]]:
    """Requests grouped by length quartile (edges at the 25th/50th/75th percentile of their lengths; a length
    on an edge falls in the lower group), with the p50 and the coefficient of variation of each; empty groups are
    left out."""
    edges = np.percentile(lengths, [25, 50, 75])
    group = np.searchsorted(edges, lengths, side="left")
    out = []
    for q in range(4):
        chosen = group == q
        if chosen.any():
            out.append(
                {
                    "quartile": q + 1,
                    "tokens": [int(lengths[chosen].min()), int(lengths[chosen].max())],
                    "requests": int(chosen.sum()),
                    "p50_ms": float(np.median(latencies_ms[chosen])),
                    "cv": _cv(latencies_ms[chosen]),
                }
            )
    return out


def _cv(latencies_ms: np.ndarray) -> float:
    mean = float(latencies_ms.mean())
    return float(latencies_ms.std()) / mean if mean > 0 else 0.0
