"""The Prometheus endpoint serves podium's counters."""

from __future__ import annotations

import urllib.request

from podium.monitoring import prometheus
from tests.servers import free_port


def test_metrics_endpoint_serves_counters() -> None:
    port = free_port()
    server = prometheus.serve(port, addr="127.0.0.1")
    try:
        prometheus.BENCHMARKS.labels("reused").inc()
        prometheus.UPDATES.labels("new_best").inc()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'podium_benchmarks_total{status="reused"}' in body
    assert 'podium_best_updates_total{reason="new_best"}' in body
    assert "podium_aggregation_lag_seconds" in body
