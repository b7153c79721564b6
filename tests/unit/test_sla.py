"""Throughput at a p99 budget on hand-made load curves."""

from __future__ import annotations

import pytest

from podium.core.sla import LoadPoint, SlaResult, best_at_sla, throughput_at_sla

#: concurrency 1, 2, 4, 8 on a server that saturates at ~400/s: p99 grows with the load.
CURVE = [
    LoadPoint("c1", 100.0, 6.0),
    LoadPoint("c2", 200.0, 8.0),
    LoadPoint("c4", 380.0, 12.0),
    LoadPoint("c8", 400.0, 24.0),
]


@pytest.mark.parametrize(
    ("sla", "expected"),
    [
        (5.9, None),  # no level meets it: nothing is extrapolated below the first level
        (6.0, SlaResult(100.0, "c1")),  # c1 meets it exactly: 0 % of the way to c2 adds nothing, c1's own figure
        (7.0, SlaResult(150.0, "c1", "c2")),  # halfway from 6 to 8 ms: halfway from 100 to 200
        (8.0, SlaResult(200.0, "c2")),  # exactly c2
        (11.0, SlaResult(335.0, "c2", "c4")),  # 3/4 of the way from 8 to 12 ms: 200 + 0.75 * 180
        (12.0, SlaResult(380.0, "c4")),
        (18.0, SlaResult(390.0, "c4", "c8")),  # half of 12 -> 24 ms
        (24.0, SlaResult(400.0, "c8")),  # the last level met: its own figure, nothing beyond
        (1000.0, SlaResult(400.0, "c8")),
    ],
)
def test_interpolates_between_the_level_that_meets_and_the_next(sla: float, expected: SlaResult | None) -> None:
    got = throughput_at_sla(CURVE, sla)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got.throughput_per_s == pytest.approx(expected.throughput_per_s)
    assert (got.met_level, got.towards) == (expected.met_level, expected.towards)
    assert got.interpolated == (expected.towards is not None)


def test_saturated_curve_keeps_the_best_level_not_the_last() -> None:
    # past saturation throughput falls while p99 grows: the best within budget is c4, not an interpolation down
    curve = [LoadPoint("c1", 100, 5), LoadPoint("c4", 300, 10), LoadPoint("c8", 250, 30)]
    assert throughput_at_sla(curve, 20) == SlaResult(300, "c4")


def test_a_level_past_the_budget_never_counts_even_between_good_ones() -> None:
    # c2 misses (a hiccup), c4 meets again: c4 counts, c2 does not, and no segment runs through c2's p99
    curve = [LoadPoint("c1", 100, 5), LoadPoint("c2", 190, 15), LoadPoint("c4", 350, 9)]
    assert throughput_at_sla(curve, 10) == SlaResult(350, "c4")
    # ... and from c1 towards the missing c2 the interpolation stays on that segment
    assert throughput_at_sla(curve[:2], 10) == SlaResult(145, "c1", "c2")


def test_empty_curve_and_bad_budget() -> None:
    assert throughput_at_sla([], 10) is None
    with pytest.raises(ValueError, match="positive"):
        throughput_at_sla(CURVE, 0)


def test_best_over_curves_interpolates_within_each_only() -> None:
    closed = [LoadPoint("c1", 100, 6), LoadPoint("c2", 200, 8)]
    opened = [LoadPoint("r50", 50, 5.5), LoadPoint("r300", 300, 30)]
    # closed: c2's 200; open: 50 + (10 - 5.5) / 24.5 * 250 = 95.9: the closed loop wins
    assert best_at_sla([closed, opened], 10) == SlaResult(200, "c2")
    assert best_at_sla([[], opened], 5.5) == SlaResult(50, "r50")
    assert best_at_sla([closed, opened], 1) is None
