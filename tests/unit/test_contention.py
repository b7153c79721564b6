"""The contention arithmetic (pure): /proc/stat parsing, others' share of a window, its resolution."""

from __future__ import annotations

import pytest

from podium.core.config import StabilitySection
from podium.core.contention import Contention, CpuReading, busy_ticks, combined, window_contention
from podium.core.stats import RepeatSpread, quality_flags, repeat_spread, summarize

STAT = """cpu  600 10 250 2100 17 0 4 40 0 0
cpu0 100 0 80 1300 5 0 1 20 0 0
cpu1 500 10 170 800 12 0 3 20 5 0
intr 127046 0 0
"""


def test_busy_ticks_count_user_nice_system_irq_softirq_steal_of_the_usable_cores() -> None:
    assert busy_ticks(STAT, [0]) == 100 + 80 + 1 + 20  # idle and iowait are not busy
    assert busy_ticks(STAT, [1]) == 500 + 10 + 170 + 3 + 20  # guest (5) is inside user already
    assert busy_ticks(STAT, [0, 1]) == busy_ticks(STAT, [0]) + busy_ticks(STAT, [1])
    with pytest.raises(ValueError, match="no line for cpu7"):
        busy_ticks(STAT, [0, 7])


def reading(busy_ms: int, own_ms: int, cores: int = 2) -> CpuReading:
    return CpuReading(busy_ms * 10**6, own_ms * 10**6, cores, 10**7)


def test_others_share_is_host_busy_minus_own_over_the_capacity() -> None:
    # 1 s on 2 cores: the host was busy 1.5 s, 0.9 s of it podium's own: others took 0.6 s of 2 s
    c = window_contention(reading(1000, 100), reading(2500, 1000), 10**9)
    assert c.share == pytest.approx(0.3) and c.resolution == pytest.approx(0.01)  # a tick a core: 10 ms of 1 s
    assert c.over(0.28) and not c.over(0.295)  # 0.30 - 0.01 resolution
    quiet = window_contention(reading(1000, 100), reading(1900, 1010), 10**9)  # own time ahead of the ticks
    assert quiet.others_ns == 0 and quiet.share == 0.0


def test_short_windows_are_judged_with_their_resolution() -> None:
    c = window_contention(reading(0, 0), reading(40, 10), 100 * 10**6)  # 100 ms, 2 cores: one tick a core = 10 %
    assert c.share == pytest.approx(0.15) and c.resolution == pytest.approx(0.1)
    assert not c.over(0.10)


def test_readings_taken_at_uncertain_instants_are_reported_not_used_to_excuse_a_window() -> None:
    # the same 100 ms window, but each reading's instant known only to within 5 ms (a paused /proc read)
    c = window_contention(reading(0, 0), reading(40, 10), 100 * 10**6, timing_ns=10 * 10**6)
    assert c.share == pytest.approx(0.15) and c.timing == pytest.approx(0.1)
    assert c.resolution == pytest.approx(0.1)  # the ticks only: a busy host's paused readings hide nothing
    assert combined([c, c]).timing == pytest.approx(0.1)
    assert window_contention(reading(0, 0), reading(40, 10), 100 * 10**6, timing_ns=-5).timing == 0.0


def test_combined_windows_weigh_by_capacity() -> None:
    a = Contention(others_ns=100, capacity_ns=1000, error_ns=10)
    b = Contention(others_ns=500, capacity_ns=1000, error_ns=10)
    assert combined([a, b]) == Contention(600, 2000, 20) and combined([a, b]).share == 0.3
    assert Contention(0, 0, 0).share == 0.0 and Contention(1200, 1000, 200).share == 1.0  # rounding past the cap


def test_repeat_spread_takes_the_input_mix_out() -> None:
    # two inputs, 1 ms and 9 ms, each sent three times, exactly: the mix spreads widely, the repeats not at all
    samples = [1_000_000, 9_000_000] * 3
    assert summarize(samples, 1).cv > 0.7
    assert repeat_spread(samples, 2) == RepeatSpread(0.0, False)
    assert repeat_spread([1_000_000, 9_000_000], 2).cv is None  # no input sent twice: nothing to say
    stalled = repeat_spread([1_000_000, 9_000_000, 1_000_000, 9_000_000, 3_000_000, 9_000_000], 2)
    assert stalled.outliers and stalled.cv is not None and stalled.cv > 0.1


def test_flags_follow_the_repeats_not_the_mix() -> None:
    samples = [1_000_000, 9_000_000] * 60
    summary = summarize(samples, 1)
    assert quality_flags(summary, True, StabilitySection(), repeat_spread(samples, 2)) == []
    assert quality_flags(summary, True, StabilitySection()) == ["high_cv", "outliers"]  # read as one input
    noisy = RepeatSpread(0.2, True)
    assert quality_flags(summary, False, StabilitySection(), noisy, contended=True) == [
        "unstable",
        "contended",
        "high_cv",
        "outliers",
    ]
