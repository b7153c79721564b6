"""Rolling-window aggregation: never the outlier, replays never count twice, order never matters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.core.aggregation import LEGACY_PREFIX, Sample, Window, aggregate, group_key, scope_key
from podium.core.records import BenchmarkRecord

PLAN = [Sample(1000, "run1", 200.0), Sample(2000, "run2", 150.0), Sample(3000, "run3", 210.0)]


def _window(samples, size=10) -> Window:
    w = Window(size)
    for s in samples:
        w = w.add(s)
    return w


@pytest.mark.parametrize(
    ("method", "latency", "representative"),
    [("latest", 210.0, "run3"), ("median", 200.0, "run1"), ("mean", 560.0 / 3, "run1")],
)
def test_fix_plan_scenario_3(method: str, latency: float, representative: str) -> None:
    agg = aggregate(_window(PLAN), method)
    assert agg.latency_ms == pytest.approx(latency)
    assert agg.latency_ms != 150.0
    assert agg.representative.run_id == representative
    assert agg.count == 3


def test_latest_is_newest_start_time_not_arrival_order() -> None:
    assert aggregate(_window(reversed(PLAN)), "latest").latency_ms == 210.0


def test_window_keeps_the_newest() -> None:
    samples = [Sample(i, f"r{i}", float(i)) for i in range(10)]
    w = _window(samples, size=3)
    assert [s.run_id for s in w.samples] == ["r7", "r8", "r9"]
    assert aggregate(w, "median").latency_ms == 8.0


def test_replay_returns_the_same_window_object() -> None:
    w = _window(PLAN)
    assert w.add(Sample(2000, "run2", 150.0)) is w
    assert w.add(Sample(9999, "run2", 1.0)) is w  # same run id, whatever it claims now


def test_too_old_sample_changes_nothing() -> None:
    w = _window([Sample(i, f"r{i}", 1.0) for i in range(5, 8)], size=3)
    assert w.add(Sample(1, "old", 99.0)) is w


def test_empty_window_cannot_be_aggregated() -> None:
    with pytest.raises(ValueError, match="empty window"):
        aggregate(Window(3), "median")


samples_st = st.lists(
    st.builds(
        Sample,
        start_time=st.integers(0, 50),
        run_id=st.text(alphabet="abcdef", min_size=1, max_size=3),
        latency_ms=st.floats(0.1, 1000, allow_nan=False),
    ),
    max_size=30,
    unique_by=lambda s: s.run_id,
)


@given(samples_st, st.randoms(), st.integers(1, 8))
def test_window_is_a_function_of_the_set(samples, rnd, size) -> None:
    shuffled = list(samples)
    rnd.shuffle(shuffled)
    replayed = shuffled + shuffled[: len(shuffled) // 2]
    assert _window(samples, size) == _window(replayed, size)


@given(samples_st.filter(bool), st.integers(1, 8), st.sampled_from(["latest", "median", "mean"]))
def test_aggregate_is_within_window_bounds(samples, size, method) -> None:
    w = _window(samples, size)
    agg = aggregate(w, method)
    values = [s.latency_ms for s in w.samples]
    assert min(values) - 1e-9 <= agg.latency_ms <= max(values) + 1e-9
    assert agg.representative in w.samples


def test_legacy_grouping_and_scope() -> None:
    legacy = BenchmarkRecord("r1", 1, "s", "t", None, "c" * 64, {})
    assert group_key(legacy).benchmark_key == f"{LEGACY_PREFIX}t"
    assert scope_key(legacy).config_hash is None
    keyed = BenchmarkRecord("r2", 1, "s", "t", "k" * 64, "c" * 64, {})
    assert group_key(keyed).benchmark_key == "k" * 64
    assert scope_key(keyed).config_hash == "c" * 64
