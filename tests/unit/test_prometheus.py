"""The Prometheus endpoint reports what the aggregator did: events applied, replayed and dead-lettered, updates
published by reason, and the lag, as read from /metrics while a real aggregator runs (fakeredis, real MLflow)."""

from __future__ import annotations

import logging
import socket
import urllib.request

import fakeredis
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from podium.aggregator.service import Aggregator
from podium.coordination import keys
from podium.core.config import SelectionConfig
from podium.monitoring import prometheus
from podium.testing import Unfenced
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import committed_result, trial_run
from tests.servers import free_port

S, T1 = "s" * 64, "1" * 64


@pytest.fixture
def endpoint():
    port = free_port()
    server = prometheus.serve(port, addr="127.0.0.1")
    assert server is not None
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    server.server_close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_the_endpoint_counts_what_the_aggregator_did(endpoint: str, client: MlflowClient, tracking: MlflowTracking):
    """Counters are process-wide: the test reads them before and after, and checks the difference."""
    r = fakeredis.FakeRedis(decode_responses=True)
    trial_run(client, S, T1, 0.9)
    agg = Aggregator(r, tracking, SelectionConfig(), "agg-1", leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()
    before = scrape(endpoint)
    result = committed_result(tracking, r, S, T1, 10.0)
    r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})  # the same result again: a replay
    r.xadd(keys.BENCHMARKS_STREAM, {"data": "{not json"})  # a dead letter
    while agg.step(block_ms=10):
        pass
    after = scrape(endpoint)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("podium_aggregator_events_total", kind="applied") == 1
    assert moved("podium_aggregator_events_total", kind="replay") == 1
    assert moved("podium_aggregator_events_total", kind="dead_letter") == 1
    assert moved("podium_best_updates_total", reason="first") == 1
    assert moved("podium_best_updates_total", reason="new_best") == 0
    assert after[("podium_aggregation_lag_seconds", ())] == pytest.approx(agg.stats.last_lag_ms / 1000)


def test_no_port_serves_nothing_and_a_taken_port_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    assert prometheus.serve(None) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="podium.monitoring.prometheus"):
            assert prometheus.serve(port, addr="127.0.0.1") is None
    assert f"Cannot serve metrics on port {port}" in caplog.text
