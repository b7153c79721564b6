"""The load loop itself, with senders of the test's own: slots really in flight together, windows, errors."""

from __future__ import annotations

import threading

import pytest

from podium.core.config import BenchmarkingSection
from podium.errors import BackendError
from podium.measurement.load import poisson_gaps, run_level

CFG = BenchmarkingSection(iterations=20, warmup_iterations=4, stability={"max_windows": 3})


@pytest.mark.parametrize("slots", [1, 3])
def test_closed_loop_keeps_every_slot_in_flight(slots: int) -> None:
    # every request waits at a barrier of ``slots`` parties: it passes only when all slots are in flight at once
    barrier = threading.Barrier(slots, timeout=5)  # a guard: on a loaded host a slot may wait for a core
    passed, broken = [], []

    def send() -> None:
        try:
            barrier.wait()
            passed.append(1)
        except threading.BrokenBarrierError:  # the level's end: the slots that stopped leave the others waiting
            broken.append(1)

    result = run_level([send] * slots, 2, CFG, level=f"c{slots}")
    assert result.mode == "concurrency" and result.asked == slots
    assert 1 <= len(result.windows) <= 3 and result.summary.count >= 20 * min(3, len(result.windows))
    assert result.summary.batch_size == 2 and result.requests >= result.summary.count
    assert result.achieved_per_s is None and result.server is None
    assert len(broken) < slots and len(passed) >= result.requests - slots


def test_a_failing_request_stops_the_level_with_its_error() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        if len(calls) > 5:
            raise BackendError("model 'm' answered HTTP 400: bad input")

    with pytest.raises(BackendError, match="HTTP 400"):
        run_level([failing, failing], 1, CFG)


def test_open_loop_counts_one_pass_of_arrivals_per_window() -> None:
    result = run_level([lambda: None] * 2, 1, CFG, rate=2000.0, level="r2000")
    assert result.mode == "request_rate" and all(w.count == 20 for w in result.windows)
    assert result.achieved_per_s is not None and result.achieved_per_s > 0 and result.late_share is not None


def test_poisson_gaps_last_exactly_the_asked_time_and_are_seeded() -> None:
    gaps = poisson_gaps(100.0, 50, seed=1)
    assert sum(gaps) == pytest.approx(0.5e9, abs=50) and gaps == poisson_gaps(100.0, 50, seed=1)
    assert gaps != poisson_gaps(100.0, 50, seed=2) and len(set(gaps)) > 40  # drawn, not constant
