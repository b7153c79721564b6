"""Prometheus metrics of workers and the aggregator, served on ``PODIUM_METRICS_PORT`` when set."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

BENCHMARKS = Counter("podium_benchmarks_total", "Benchmark requests handled, by outcome", ["status"])
LOCK_WAITS = Counter("podium_lock_waits_total", "Requests that found their benchmark_key locked and retried")
BENCHMARK_SECONDS = Histogram(
    "podium_benchmark_seconds",
    "Time to handle one request (measure, log, commit)",
    buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600),
)
EVENTS = Counter("podium_aggregator_events_total", "Result events applied by the aggregator", ["kind"])
UPDATES = Counter("podium_best_updates_total", "Best-model updates published", ["reason"])
LEADERSHIP = Counter("podium_aggregator_leadership_total", "Leads taken and lost by this aggregator", ["event"])
LAG = Gauge("podium_aggregation_lag_seconds", "Age of the last result event when the aggregator applied it")


def serve(port: int | None, addr: str = "0.0.0.0"):
    """Start the /metrics endpoint; returns the server (None when ``port`` is unset or taken)."""
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        log.error("Cannot serve metrics on port %d: %s", port, exc)
        return None
    log.info("Prometheus metrics on :%d/metrics.", port)
    return server
