"""MLflow metric names per batch size, as existing stores name them (DESIGN.md, MLflow conventions)."""

from __future__ import annotations

from podium.core.stats import LatencySummary


def latency_metric(batch_size: int, stat: str = "") -> str:
    """``latency_batch_{b}_ms`` (the mean) or ``latency_batch_{b}_{stat}_ms``."""
    return f"latency_batch_{batch_size}_{stat + '_' if stat else ''}ms"


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
