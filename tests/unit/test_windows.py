"""The measurement loop on a variable-length mix and on a busy host: an injected clock and an injected CPU sampler
make every window deterministic (no sleeping, no real host)."""

from __future__ import annotations

import pytest

from podium.core.config import BenchmarkingSection
from podium.core.contention import CpuReading
from podium.core.metric_names import host_metrics
from podium.measurement.loop import measure_batch, window_length

TICK_NS = 10_000_000  # 10 ms: the host counters' resolution, as on most kernels
#: 50 texts of 8-200 tokens, most of them short (lengths spaced geometrically), as real sentences are.
LENGTHS = [round(8 * 25 ** (i / 49)) for i in range(50)]


class FakeHost:
    """A 2-core host and a model whose cost grows with the square of the sequence length (attention).
    ``loads[k]``: the share of the cores others take during window ``k`` (the last one repeats); while they do,
    every request is slower by 1 / (1 - load). The sampler reads podium's own CPU (one core whenever a request
    runs) and the host's busy time in whole ticks, as /proc/stat gives it."""

    def __init__(self, loads: list[float], cores: int = 2):
        self.now = 0
        self.loads = loads
        self.cores = cores
        self.own = 0
        self.others = 0.0
        self.reads = 0
        self.calls = 0

    @property
    def load(self) -> float:
        window = max(0, (self.reads - 1) // 2)  # reads 1 and 2 bracket window 0, 3 and 4 window 1, ...
        return self.loads[min(window, len(self.loads) - 1)] if self.reads % 2 else 0.0

    def clock(self) -> int:
        return self.now

    def request(self, tokens: int):
        def call() -> None:
            self.calls += 1
            jitter = 1 + 0.01 * (self.calls % 3)  # a little noise that differs window to window
            spent = int((0.05 + 0.002 * tokens * tokens) * 1e6 * jitter / (1 - self.load))
            self.now += spent
            self.own += spent
            self.others += spent * self.load * self.cores

        return call

    def sampler(self) -> CpuReading:
        self.reads += 1
        busy = (self.own + int(self.others)) // TICK_NS * TICK_NS
        return CpuReading(host_busy_ns=busy, own_ns=self.own, cores=self.cores, tick_ns=TICK_NS)


def cfg(**stability) -> BenchmarkingSection:
    rules = {"max_windows": 10, "agree_windows": 3, "max_ratio": 1.10, "max_contention": 0.10} | stability
    return BenchmarkingSection.model_validate({"iterations": 60, "warmup_iterations": 7, "stability": rules})


def test_windows_are_whole_passes_over_the_planned_requests() -> None:
    assert window_length(60, 50) == 100 and window_length(100, 64) == 128 and window_length(100, 1) == 100
    assert window_length(10, 64) == 64  # one pass at least: every window holds every input


def test_variable_length_mix_is_stable_though_each_window_spreads_widely() -> None:
    host = FakeHost([0.0])
    m = measure_batch([host.request(n) for n in LENGTHS], 1, cfg(), host.clock, sampler=host.sampler)
    assert m.summary.cv > 1  # the mix: 0.18 ms to 80 ms per request
    assert m.stable and len(m.windows) == 3  # the fewest windows possible
    assert "high_cv" not in m.flags and "outliers" not in m.flags and "unstable" not in m.flags
    assert m.spread is not None and m.spread.cv is not None and m.spread.cv < 0.02  # repeats of one input: ~1 %
    assert m.window_requests == 100 and m.distinct == 50 and m.summary.count == 300
    assert not m.contended and m.host is not None and m.host.share == pytest.approx(0, abs=m.host.resolution)


def test_each_window_starts_at_the_first_request() -> None:
    host = FakeHost([0.0])
    made: list[int] = []
    requests = [lambda i=i: made.append(i) or host.request(LENGTHS[i])() for i in range(len(LENGTHS))]
    m = measure_batch(requests, 1, cfg(), host.clock, sampler=host.sampler)
    timed = made[7:]  # after 7 warm-up calls (0..6)
    assert made[:7] == list(range(7))
    assert timed == [j % 50 for j in range(100)] * len(m.windows)
    # sample j was input j % 50: the longest text (the last input) is the slowest of every pass
    assert all(max(range(p, p + 50), key=lambda j: m.samples_ns[j]) == p + 49 for p in range(0, 300, 50))


def test_a_contended_window_is_discarded_and_measured_again() -> None:
    host = FakeHost([0.0, 0.6, 0.0])  # others take 60 % of the cores during the second window only
    m = measure_batch([host.request(n) for n in LENGTHS], 1, cfg(), host.clock, sampler=host.sampler)
    assert m.discarded == [False, True, False, False] and len(m.windows) == 4
    assert m.contention[1] is not None and m.contention[1].share == pytest.approx(0.6, abs=0.05)
    assert m.windows[1].p50_ms > 2 * m.windows[0].p50_ms  # the busy window was slow, and it is not reported
    assert m.stable and not m.contended and "contended" not in m.flags
    assert m.summary.p50_ms == pytest.approx(m.windows[0].p50_ms, rel=0.03)
    assert m.host is not None and m.host.share < 0.05


def test_a_result_that_never_got_quiet_windows_is_flagged_contended() -> None:
    host = FakeHost([0.6])  # a steady neighbour: every window as slow as the next, so they agree
    m = measure_batch([host.request(n) for n in LENGTHS], 1, cfg(max_windows=6), host.clock, sampler=host.sampler)
    assert len(m.windows) == 6 and all(m.discarded)  # retried up to max_windows, never quiet
    assert m.contended and m.stable and m.flags[0] == "contended" and "unstable" not in m.flags
    assert m.host is not None and m.host.share == pytest.approx(0.6, abs=0.05)
    assert host_metrics(1, m.host.share, None) == {"host_contention_batch_1": m.host.share}


def test_the_least_busy_windows_are_reported_when_none_was_quiet() -> None:
    host = FakeHost([0.55, 0.7, 0.6])
    m = measure_batch([host.request(n) for n in LENGTHS], 1, cfg(max_windows=6), host.clock, sampler=host.sampler)
    assert len(m.windows) == 6 and all(m.discarded)
    assert m.contended and not m.stable and {"unstable", "contended"} <= set(m.flags)  # 0.55 vs 0.6: 12 % apart
    assert m.host is not None and m.host.share == pytest.approx((0.55 + 0.6 + 0.6) / 3, abs=0.05)  # least busy 3
    assert m.summary.count == 300 and m.summary.min_ms == min(w.min_ms for w in m.windows)


def test_readings_without_discarding_for_a_server_in_another_process() -> None:
    host = FakeHost([0.6])
    requests = [host.request(n) for n in LENGTHS]
    m = measure_batch(requests, 1, cfg(), host.clock, sampler=host.sampler, discard_contended=False)
    assert not any(m.discarded) and m.stable and not m.contended and len(m.windows) == 3
    assert m.host is not None and m.host.share == pytest.approx(0.6, abs=0.05)  # recorded all the same


def test_a_load_within_the_counters_resolution_is_not_contention() -> None:
    """A window of 100 ms on 2 cores is known to +-10 %: a 15 % share could be 5 %; it is kept."""
    host = FakeHost([0.15])
    short = [host.request(8)]  # 0.18 ms a request: 100 requests make an 18 ms window
    m = measure_batch(short, 1, cfg(max_windows=3), host.clock, sampler=host.sampler)
    assert not any(m.discarded) and m.host is not None and m.host.resolution > 0.15


def test_no_sampler_no_readings() -> None:
    host = FakeHost([0.9])
    m = measure_batch([host.request(n) for n in LENGTHS], 1, cfg(), host.clock)
    assert m.host is None and m.contention == [None, None, None] and m.stable
