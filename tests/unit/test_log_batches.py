"""How a benchmark's metrics and tags are cut into the ``log_batch`` calls MLflow's store takes."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric, RunTag

from podium.tracking.one_transaction import MAX_BATCH_ITEMS, MAX_BATCH_TAGS, batches


def metrics(n: int) -> list[Metric]:
    return [Metric(f"m{i}", float(i), 0, 0) for i in range(n)]


def tags(n: int) -> list[RunTag]:
    return [RunTag(f"t{i}", "v") for i in range(n)]


@pytest.mark.parametrize("m", [0, 1, 997, 998, 999, 1000, 1001, 2500])
@pytest.mark.parametrize("t", [0, 1, 2, 100, 101, 250])
def test_every_item_goes_once_in_order_and_every_call_is_within_mlflows_limits(m: int, t: int) -> None:
    calls = batches(metrics(m), tags(t))
    assert [x for ms, _ in calls for x in ms] == metrics(m)
    assert [x for _, ts in calls for x in ts] == tags(t)
    assert all(len(ms) + len(ts) <= MAX_BATCH_ITEMS and len(ts) <= MAX_BATCH_TAGS for ms, ts in calls)
    assert all(ms or ts for ms, ts in calls) or calls == [([], [])]


def test_a_benchmarks_results_are_one_call() -> None:
    assert len(batches(metrics(40), tags(3))) == 1
    assert len(batches(metrics(998), tags(2))) == 1 and len(batches(metrics(999), tags(2))) == 2


def test_nothing_is_one_empty_call() -> None:
    assert batches([], []) == [([], [])]
