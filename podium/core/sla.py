"""Throughput at a latency budget (pure): the headline figure of a load benchmark.

A load curve is a list of levels in the order their load grows (concurrency 1, 2, 4, ... or rates 50, 100, ...),
each with its throughput and p99. The figure is the highest throughput whose p99 meets the budget: a level
that meets it counts as measured; between a level that meets it and the next one that does not, the throughput
is interpolated linearly on p99 (the budget is reached somewhere on that segment). A level past the budget never
counts, and nothing is extrapolated beyond the measured levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadPoint:
    """One measured level: its name (``c4``, ``r100``), throughput (inferences/s) and p99 (ms)."""

    level: str
    throughput_per_s: float
    p99_ms: float


@dataclass(frozen=True)
class SlaResult:
    throughput_per_s: float
    #: The level that met the budget and the figure comes from (or starts its interpolation).
    met_level: str
    #: The next level, past the budget, the figure was interpolated towards (None: a measured level's own).
    towards: str | None = None

    @property
    def interpolated(self) -> bool:
        return self.towards is not None


def throughput_at_sla(curve: Sequence[LoadPoint], sla_p99_ms: float) -> SlaResult | None:
    """The highest throughput on ``curve`` (levels in load order) whose p99 meets ``sla_p99_ms``; None when no
    level meets it. Ties go to the lighter level (the first found)."""
    if not sla_p99_ms > 0:
        raise ValueError(f"the p99 budget must be positive, got {sla_p99_ms}")
    best: SlaResult | None = None

    def consider(candidate: SlaResult) -> None:
        nonlocal best
        if best is None or candidate.throughput_per_s > best.throughput_per_s:
            best = candidate

    for i, point in enumerate(curve):
        if point.p99_ms > sla_p99_ms:
            continue
        consider(SlaResult(point.throughput_per_s, point.level))
        if i + 1 < len(curve) and curve[i + 1].p99_ms > sla_p99_ms:
            nxt = curve[i + 1]
            share = (sla_p99_ms - point.p99_ms) / (nxt.p99_ms - point.p99_ms)
            at = point.throughput_per_s + share * (nxt.throughput_per_s - point.throughput_per_s)
            consider(SlaResult(at, point.level, nxt.level))
    return best


def best_at_sla(curves: Sequence[Sequence[LoadPoint]], sla_p99_ms: float) -> SlaResult | None:
    """The highest throughput at the budget over several curves (the closed-loop and the open-loop one): each is
    interpolated within itself only."""
    found = [r for r in (throughput_at_sla(c, sla_p99_ms) for c in curves) if r is not None]
    return max(found, key=lambda r: r.throughput_per_s, default=None)
