"""A benchmark's headline figures as written back onto the run it measured, under a ``podium.`` prefix, so that
MLflow's compare view shows the trial's quality metric and its latency in one row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podium.core.metric_names import latency_metric

#: Every metric and tag podium writes onto a training run starts with this.
PREFIX = "podium."
#: The per-batch statistics written back (p50 and p99 latency).
STATS = ("p50", "p99")


def headline(
    metrics: Mapping[str, float],
    batch_sizes: Iterable[int],
    *,
    benchmark_run_id: str,
    benchmark_key: str,
    stability: str,
    backend: str,
) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) to write onto the source run: p50/p99 per batch size (those measured), the stability of
    each batch size, and which benchmark run and key they come from."""
    out: dict[str, float] = {}
    for b in batch_sizes:
        for stat in STATS:
            name = latency_metric(b, stat)
            if name in metrics:
                out[PREFIX + name] = float(metrics[name])
    tags = {
        PREFIX + "benchmark_run_id": benchmark_run_id,
        PREFIX + "benchmark_key": benchmark_key,
        PREFIX + "backend": backend,
    }
    if stability:
        tags[PREFIX + "stability"] = stability
    return out, tags
