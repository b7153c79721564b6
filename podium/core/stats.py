"""Measurement statistics (pure): nearest-rank percentiles, window summaries, perf_analyzer stability.

Percentiles use the nearest rank over sorted samples, ``round(p/100 * (n-1))``. The sample count is
always reported: a p99 of fewer than 100 samples is flagged rather than passed off as a p99.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from podium.core.config import StabilitySection

PERCENTILES = (50, 90, 95, 99)
#: Fewer samples than this and the p99 is really a max; it is flagged.
MIN_SAMPLES_FOR_P99 = 100


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {p}")
    return sorted_values[round(p / 100 * (len(sorted_values) - 1))]


@dataclass(frozen=True)
class LatencySummary:
    """Latency of one batch size, in milliseconds; throughput in inferences (batch items) per second."""

    batch_size: int
    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    cv: float
    throughput_per_s: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(samples_ns: Sequence[int], batch_size: int, wall_ns: int | None = None) -> LatencySummary:
    """Summary of request latencies (ns). Throughput is items over the wall time of the window
    (the sum of latencies when the wall time is not given)."""
    if not samples_ns:
        raise ValueError("cannot summarise zero samples")
    ms = sorted(s / 1e6 for s in samples_ns)
    mean = min(max(statistics.fmean(ms), ms[0]), ms[-1])  # float rounding never leaves [min, max]
    std = statistics.pstdev(ms) if len(ms) > 1 else 0.0
    wall_s = (wall_ns if wall_ns else sum(samples_ns)) / 1e9
    p50, p90, p95, p99 = (percentile(ms, p) for p in PERCENTILES)
    return LatencySummary(
        batch_size=batch_size,
        count=len(ms),
        mean_ms=mean,
        std_ms=std,
        min_ms=ms[0],
        max_ms=ms[-1],
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        cv=std / mean if mean > 0 else 0.0,
        throughput_per_s=batch_size * len(ms) / wall_s if wall_s > 0 else math.inf,
    )


def windows_agree(windows: Sequence[LatencySummary], rules: StabilitySection) -> bool:
    """perf_analyzer's rule: the last ``agree_windows`` windows agree within ``max_ratio`` (max/min)
    on p50 latency and on throughput."""
    if len(windows) < rules.agree_windows:
        return False
    last = windows[-rules.agree_windows :]
    return all(_ratio([getattr(w, attr) for w in last]) <= rules.max_ratio for attr in ("p50_ms", "throughput_per_s"))


def _ratio(values: list[float]) -> float:
    lo, hi = min(values), max(values)
    return math.inf if lo <= 0 else hi / lo


def quality_flags(summary: LatencySummary, stable: bool, rules: StabilitySection) -> list[str]:
    """What a reader must know about a figure: unstable windows, high CV (pyperf), a p99 of few samples,
    min or max far from the mean (pyperf: 50 %)."""
    flags = [] if stable else ["unstable"]
    if summary.cv >= rules.max_cv:
        flags.append("high_cv")
    if summary.mean_ms > 0 and (summary.min_ms < 0.5 * summary.mean_ms or summary.max_ms > 1.5 * summary.mean_ms):
        flags.append("outliers")
    if summary.count < MIN_SAMPLES_FOR_P99:
        flags.append("p99_few_samples")
    return flags
