"""Why a benchmark run's figure is in doubt (pure): its measurement windows never agreed (``unstable``), or other
processes took the host while it measured (``contended``). A run in doubt is shown everywhere with its reason and
competes only under ``selection.include_unstable``.

Read from what the run says of itself, for the ranked batch size ``b``: the metric ``latency_batch_{b}_stable``
(0: unstable), the tag ``code.benchmark.stability`` (``b1:stable,b8:unstable``; a part naming ``contended`` or
``unstable``), the tag ``code.benchmark.contended`` (``1`` / ``true``) and, when measured, the metric
``host_contention_batch_{b}`` (others' share of the CPU) to say how contended. Runs that say nothing (written
before these flags) are clean.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

_FALSE = {"", "0", "false", "no", "none", "0.0"}


def stability_part(stability_tag: str, batch_size: int) -> str:
    """The part of a stability tag for one batch size (``b8:unstable`` -> ``unstable``); the whole tag when it
    has no per-batch parts."""
    tag = stability_tag.strip()
    prefix = f"b{batch_size}:"
    parts = [p.strip() for p in tag.split(",")]
    per_batch = [p for p in parts if p[:1] == "b" and ":" in p]
    if not per_batch:
        return tag.lower()
    return next((p[len(prefix) :].lower() for p in per_batch if p.startswith(prefix)), "")


def doubt_of(metrics: Mapping[str, float], stability_tag: str, contended_tag: str, batch_size: int) -> str:
    """``""`` for a clean run; else its reasons, e.g. ``"unstable"``, ``"contended (others took 35 % of the
    CPU)"``, ``"unstable, contended"``."""
    part = stability_part(stability_tag, batch_size) if stability_tag else ""
    reasons = []
    # a contended run's windows never agreed either (its flag is 0): its reason is the contention
    stable, contention = doubt_metrics(batch_size)
    flagged = metrics.get(stable) == 0.0 and "contended" not in part
    if flagged or "unstable" in part:
        reasons.append("unstable")
    if "contended" in part or (contended_tag and contended_tag.strip().lower() not in _FALSE):
        share = metrics.get(contention)
        reasons.append("contended" + (f" (others took {share:.0%} of the CPU)" if share is not None else ""))
    return ", ".join(reasons)


@functools.cache  # a handful of batch sizes; read for every result folded
def doubt_metrics(batch_size: int) -> tuple[str, str]:
    """The metrics :func:`doubt_of` reads (a reader may fetch only these and the ranked figure's)."""
    return (f"latency_batch_{batch_size}_stable", f"host_contention_batch_{batch_size}")
