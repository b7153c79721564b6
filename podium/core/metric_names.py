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


def host_metrics(batch_size: int, host_share: float | None, noise_cv: float | None) -> dict[str, float]:
    """The host load during the reported windows (others' share of the usable cores' capacity), and the spread
    of repeats of the same request (noise, the input mix taken out); each only when measured."""
    metrics = {}
    if host_share is not None:
        metrics[f"host_contention_batch_{batch_size}"] = host_share
    if noise_cv is not None:
        metrics[f"latency_batch_{batch_size}_noise_cv"] = noise_cv
    return metrics


def server_metrics(batch_size: int, queue_ms: float, compute_ms: float, overhead_ms: float) -> dict[str, float]:
    """Triton's own view per request (statistics extension), and what the client added on top of it."""
    return {
        f"server_queue_batch_{batch_size}_ms": queue_ms,
        f"server_compute_batch_{batch_size}_ms": compute_ms,
        f"client_overhead_batch_{batch_size}_ms": overhead_ms,
    }


#: The headline figure of a load benchmark with ``benchmarking.load.sla_p99_ms`` set (higher is better).
THROUGHPUT_AT_SLA = "throughput_at_sla_per_s"
#: A serving-config search a request asked for (``benchmarking.tune``): the winner's throughput at the budget.
TUNED_THROUGHPUT_AT_SLA = "tuned_throughput_at_sla_per_s"
#: The p99 budget (ms) ``throughput_at_sla_per_s`` was measured at, logged beside it.
LOAD_SLA = "load_sla_p99_ms"


def load_level_name(concurrency: int | None = None, request_rate: float | None = None) -> str:
    """A load level's name in metrics and ``benchmark.json``: ``c4`` (4 in flight) or ``r100`` (100 requests/s;
    ``r12p5`` for 12.5)."""
    if (concurrency is None) == (request_rate is None):
        raise ValueError("a load level is a concurrency or a request rate, exactly one")
    if concurrency is not None:
        return f"c{concurrency}"
    rate = float(request_rate)  # type: ignore[arg-type]
    return f"r{int(rate)}" if rate.is_integer() else f"r{rate:g}".replace(".", "p")


def load_metric(level: str, stat: str) -> str:
    """``load_{level}_{stat}``, e.g. ``load_c4_throughput_per_s``, ``load_c4_p99_ms``, ``load_r100_achieved_per_s``."""
    return f"load_{level}_{stat}"
