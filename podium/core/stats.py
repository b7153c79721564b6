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


#: The window-level figures that must agree (perf_analyzer: latency and throughput; the tail too).
AGREEING = ("p50_ms", "p99_ms", "throughput_per_s")


def windows_agree(windows: Sequence[LatencySummary], rules: StabilitySection) -> bool:
    """perf_analyzer's rule: the last ``agree_windows`` windows agree within ``max_ratio`` (max/min) on p50
    and p99 latency and on throughput. Each window sends the same requests in the same order, so what differs
    between windows is the host, never the input mix; the spread within a window does not enter."""
    if len(windows) < rules.agree_windows:
        return False
    last = windows[-rules.agree_windows :]
    return all(_ratio([getattr(w, attr) for w in last]) <= rules.max_ratio for attr in AGREEING)


def _ratio(values: list[float]) -> float:
    lo, hi = min(values), max(values)
    return math.inf if lo <= 0 else hi / lo


@dataclass(frozen=True)
class RepeatSpread:
    """The spread of repeated identical requests: noise, with the input mix taken out."""

    #: Pooled within-input standard deviation over the overall mean (None: no input was sent twice).
    cv: float | None
    #: Some request took under half or over 1.5 times the mean of the requests with its input (pyperf's rule).
    outliers: bool


def repeat_spread(samples_ns: Sequence[int], distinct: int) -> RepeatSpread:
    """Sample ``j`` was input ``j % distinct``: the spread of each input's samples around its own mean."""
    if not samples_ns or distinct < 1:
        raise ValueError("repeat_spread needs samples and at least one distinct input")
    groups = [samples_ns[i::distinct] for i in range(min(distinct, len(samples_ns)))]
    means = [statistics.fmean(g) for g in groups]
    squares = sum((s - m) ** 2 for g, m in zip(groups, means, strict=True) for s in g)
    overall = statistics.fmean(samples_ns)
    repeated = len(samples_ns) > len(groups)
    cv = math.sqrt(squares / len(samples_ns)) / overall if repeated and overall > 0 else None
    outliers = any(s < 0.5 * m or s > 1.5 * m for g, m in zip(groups, means, strict=True) if len(g) > 1 for s in g)
    return RepeatSpread(cv, outliers)


def quality_flags(
    summary: LatencySummary,
    stable: bool,
    rules: StabilitySection,
    spread: RepeatSpread | None = None,
    contended: bool = False,
) -> list[str]:
    """What a reader must know about a figure: unstable windows, windows taken while others used the CPU,
    high CV and outliers among repeats of the same request (pyperf: CV >= 10 %, a sample 50 % off the mean;
    ``spread`` None: every request was the same), a p99 of few samples. The spread of a mix of input lengths is
    reported (``cv``), never flagged: it is the workload, not noise."""
    if spread is None:
        mean = summary.mean_ms
        outliers = mean > 0 and (summary.min_ms < 0.5 * mean or summary.max_ms > 1.5 * mean)
        spread = RepeatSpread(summary.cv, outliers)
    flags = [] if stable else ["unstable"]
    if contended:
        flags.append("contended")
    if spread.cv is not None and spread.cv >= rules.max_cv:
        flags.append("high_cv")
    if spread.outliers:
        flags.append("outliers")
    if summary.count < MIN_SAMPLES_FOR_P99:
        flags.append("p99_few_samples")
    return flags
