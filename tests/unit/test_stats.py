"""Statistics and the measurement loop, with an injected clock: deterministic, no sleeping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podium.core.config import BenchmarkingSection, StabilitySection
from podium.core.metric_names import summary_metrics
from podium.core.stats import percentile, quality_flags, summarize, windows_agree
from podium.measurement.loop import measure_batch


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == values[round(0.5 * 99)] == 51
    assert percentile(values, 99) == 99
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="within"):
        percentile([1], 101)


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=200), st.integers(1, 64))
def test_summary_invariants(samples: list[int], batch: int) -> None:
    s = summarize(samples, batch)
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
    assert s.min_ms <= s.mean_ms <= s.max_ms + 1e-9
    assert s.count == len(samples) and s.cv >= 0
    assert s.throughput_per_s == pytest.approx(batch * len(samples) / (sum(samples) / 1e9))


def test_summary_uses_wall_time_for_throughput() -> None:
    s = summarize([1_000_000] * 10, batch_size=4, wall_ns=20_000_000)  # 10 x 1 ms in 20 ms
    assert s.mean_ms == 1.0 and s.throughput_per_s == pytest.approx(4 * 10 / 0.02)


def test_window_agreement_rule() -> None:
    rules = StabilitySection(max_ratio=1.10, agree_windows=3)
    w = lambda ms: summarize([int(ms * 1e6)] * 5, 1)  # noqa: E731
    assert not windows_agree([w(1.0), w(1.0)], rules)
    assert windows_agree([w(5.0), w(1.00), w(1.05), w(1.09)], rules)
    assert not windows_agree([w(1.00), w(1.05), w(1.20)], rules)


def test_flags() -> None:
    rules = StabilitySection()
    steady = summarize([1_000_000] * 200, 1)
    assert quality_flags(steady, True, rules) == []
    noisy = summarize([1_000_000, 1_000_000, 1_000_000, 4_000_000] * 5, 1)  # max > 1.5 x mean
    assert quality_flags(noisy, False, rules) == ["unstable", "high_cv", "outliers", "p99_few_samples"]


class FakeClock:
    """Each call of the measured function takes the next service time from ``times_ms``."""

    def __init__(self, times_ms):
        self.now = 0
        self.times = itertools.cycle(times_ms)
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def call(self) -> None:
        self.calls += 1
        self.now += int(next(self.times) * 1e6)


def cfg(**kw) -> BenchmarkingSection:
    base = {"iterations": 10, "warmup_iterations": 4, "stability": {"max_windows": 6, "agree_windows": 3}}
    return BenchmarkingSection.model_validate(base | kw)


def test_steady_service_is_stable_after_minimum_windows() -> None:
    fake = FakeClock([2.0])
    progress = []
    m = measure_batch(fake.call, 1, cfg(), fake.clock, lambda *a: progress.append(a))
    assert m.stable and m.flags == ["p99_few_samples"]
    assert len(m.windows) == 3 and fake.calls == 4 + 30
    assert m.summary.count == 30 and m.summary.p50_ms == 2.0 and m.summary.throughput_per_s == pytest.approx(500)
    assert progress[0] == (1, "warmup", 1, 4) and progress[-1] == (1, "measure", 30, 30)


def test_warmup_is_not_measured() -> None:
    fake = FakeClock([100.0] * 4 + [1.0] * 10_000)  # a slow first few calls (JIT, caches)
    m = measure_batch(fake.call, 1, cfg(), fake.clock)
    assert m.summary.max_ms == 1.0


def test_drifting_service_never_settles_and_is_flagged() -> None:
    drift = [1.0 + 0.5 * i for i in range(200)]  # every window slower than the last
    fake = FakeClock([t for t in drift for _ in range(10)])
    m = measure_batch(fake.call, 1, cfg(warmup_iterations=0), fake.clock)
    assert not m.stable and "unstable" in m.flags and len(m.windows) == 6
    assert m.summary.count == 30  # the last agree_windows windows are reported


def test_metrics_follow_design_names() -> None:
    s = summarize([1_000_000, 2_000_000, 3_000_000], 8)
    metrics = summary_metrics(s, stable=True)
    assert metrics["latency_batch_8_ms"] == s.mean_ms
    for name in ("p50", "p90", "p95", "p99", "std"):
        assert f"latency_batch_8_{name}_ms" in metrics
    assert metrics["throughput_batch_8_per_s"] == s.throughput_per_s
    assert metrics["latency_batch_8_samples"] == 3 and metrics["latency_batch_8_stable"] == 1.0


def test_server_statistics_are_diffed_around_the_measured_windows() -> None:
    """Triton's statistics are cumulative: only the requests between the two snapshots count."""
    from podium.backends.base import ServerStats
    from podium.measurement.loop import BatchMeasurement
    from podium.measurement.measure import _server_breakdown

    window = summarize([5_000_000] * 100, 1)  # the client saw 5 ms per request
    m = BatchMeasurement(window, [window], stable=True)
    before = ServerStats(count=1000, queue_ns=10**9, compute_ns=3 * 10**9)
    after = ServerStats(count=1100, queue_ns=10**9 + 100 * 500_000, compute_ns=3 * 10**9 + 100 * 3_000_000)
    queue, compute, overhead = _server_breakdown(before, after, m)
    assert (queue, compute) == (0.5, 3.0)
    assert overhead == 1.5  # 5 ms seen by the client: 0.5 queued, 3 computed, the rest is the client's
    assert _server_breakdown(None, after, m) is None and _server_breakdown(after, after, m) is None


def test_the_kept_samples_are_the_last_windows() -> None:
    drift = [1.0 + 0.5 * i for i in range(200)]
    fake = FakeClock([t for t in drift for _ in range(10)])
    m = measure_batch(fake.call, 1, cfg(warmup_iterations=0), fake.clock)
    assert len(m.windows) == 6 and len(m.samples_ns) == 30
    # 6 windows of 10 calls; the last 3 windows are reported: calls 30 onwards
    assert m.samples_ns[0] == int(drift[3] * 1e6) and m.distinct == 1
