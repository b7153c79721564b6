"""MLflow metric names per batch size, as existing stores name them (DESIGN.md, MLflow conventions)."""

from __future__ import annotations

import re

from podium.core.stats import LatencySummary


def latency_metric(batch_size: int, stat: str = "") -> str:
    """``latency_batch_{b}_ms`` (the mean) or ``latency_batch_{b}_{stat}_ms``."""
    return f"latency_batch_{batch_size}_{stat + '_' if stat else ''}ms"


def batch_size_of(metric: str) -> int | None:
    """The batch size a per-batch metric is measured at (``latency_batch_8_p50_ms`` -> 8), else None."""
    match = _BATCH.match(metric)
    return int(match.group(1)) if match else None


def stability_metric(latency_metric_name: str) -> str | None:
    """The run's stability flag (1: its windows agreed) for the batch size a latency metric is measured at:
    ``latency_batch_8_p50_ms`` -> ``latency_batch_8_stable``; None for a metric of no batch size."""
    b = batch_size_of(latency_metric_name)
    return None if b is None else f"latency_batch_{b}_stable"


_BATCH = re.compile(r"^(?:latency|server_compute|server_queue|client_overhead)_batch_(\d+)_")


def summary_metrics(s: LatencySummary, stable: bool) -> dict[str, float]:
    b = s.batch_size
    return {
        latency_metric(b): s.mean_ms,
        latency_metric(b, "p50"): s.p50_ms,
        latency_metric(b, "p90"): s.p90_ms,
        latency_metric(b, "p95"): s.p95_ms,
        latency_metric(b, "p99"): s.p99_ms,
        latency_metric(b, "std"): s.std_ms,
        latency_metric(b, "min"): s.min_ms,
        latency_metric(b, "max"): s.max_ms,
        f"throughput_batch_{b}_per_s": s.throughput_per_s,
        f"latency_batch_{b}_samples": float(s.count),
        f"latency_batch_{b}_cv": s.cv,
        f"latency_batch_{b}_stable": 1.0 if stable else 0.0,
    }


def server_metrics(batch_size: int, queue_ms: float, compute_ms: float, overhead_ms: float) -> dict[str, float]:
    """Triton's own view per request (statistics extension), and what the client added on top of it."""
    return {
        f"server_queue_batch_{batch_size}_ms": queue_ms,
        f"server_compute_batch_{batch_size}_ms": compute_ms,
        f"client_overhead_batch_{batch_size}_ms": overhead_ms,
    }
