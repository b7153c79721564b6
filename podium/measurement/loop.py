"""The measurement loop: warm up, then time requests in windows until they agree (perf_analyzer style).

Every window sends the same requests in the same order: it starts at the first planned request and makes whole
passes over them (at least ``iterations`` calls), so windows differ only by what the host did, never by the
input mix. Windows in which other processes took more than ``stability.max_contention`` of the usable cores
are discarded and measured again, within ``max_windows``.

The timed region is the call alone (inputs are built once, before). The clock and the CPU sampler are injected
so the loop can be tested deterministically; a backend's ``infer`` returns only when the work is done (it
synchronises CUDA itself), so reading the clock after it is honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from podium.core.clock import Timer
from podium.core.config import BenchmarkingSection
from podium.core.contention import Contention, CpuReading, combined, window_contention
from podium.core.stats import LatencySummary, RepeatSpread, quality_flags, repeat_spread, summarize, windows_agree
from podium.measurement.cpu_load import Sampler

#: Progress callback: (batch_size, phase 'warmup'|'measure', done, total).
Progress = Callable[[int, str, int, int], None]
Request = Callable[[], object]


@dataclass(frozen=True)
class Window:
    summary: LatencySummary
    wall_ns: int
    #: Others' use of the CPU during the window (None: no sampler), and whether it was too much.
    contention: Contention | None = None
    discarded: bool = False


@dataclass(frozen=True)
class BatchMeasurement:
    summary: LatencySummary  # over the samples of the reported windows
    windows: list[LatencySummary]  # every window in order, discarded ones included
    stable: bool
    flags: list[str] = field(default_factory=list)
    #: The samples of the summary (ns, in the order taken): sample ``j`` was planned request ``j % distinct``.
    samples_ns: list[int] = field(default_factory=list)
    distinct: int = 1
    #: Per window (same order as ``windows``): others' CPU share and whether the window was discarded for it.
    contention: list[Contention | None] = field(default_factory=list)
    discarded: list[bool] = field(default_factory=list)
    #: Others' CPU share over the reported windows (None: not sampled), and whether it was too much.
    host: Contention | None = None
    contended: bool = False
    spread: RepeatSpread | None = None
    window_requests: int = 0


def window_length(iterations: int, distinct: int) -> int:
    """Calls per window: at least ``iterations``, rounded up to whole passes over the ``distinct`` requests."""
    return -(-iterations // distinct) * distinct


def measure_batch(
    requests: Request | Sequence[Request],
    batch_size: int,
    cfg: BenchmarkingSection,
    clock: Timer = time.perf_counter_ns,
    progress: Progress | None = None,
    on_measure_start: Callable[[], object] | None = None,
    sampler: Sampler | None = None,
    discard_contended: bool = True,
) -> BatchMeasurement:
    """Warm up, then measure windows until the last ``agree_windows`` quiet ones agree or ``max_windows`` windows
    were made (then the result is flagged ``unstable``). ``requests``: one call, or the planned requests, made in
    turn from the first in every window. ``sampler``: CPU readings taken around each window (None: contention is
    not read); ``discard_contended`` False records the readings without discarding windows (a backend whose
    work runs in another process, which the readings would count as others'). ``on_measure_start`` runs between
    warm-up and the first window (a server statistics snapshot)."""
    calls = [requests] if callable(requests) else list(requests)
    if not calls:
        raise ValueError("measure_batch needs at least one request")
    rules = cfg.stability
    for i in range(cfg.warmup_iterations):
        calls[i % len(calls)]()
        if progress:
            progress(batch_size, "warmup", i + 1, cfg.warmup_iterations)
    if on_measure_start:
        on_measure_start()
    length = window_length(cfg.iterations, len(calls))
    windows: list[Window] = []
    samples: list[list[int]] = []
    planned = rules.agree_windows * length
    done = 0
    for _ in range(rules.max_windows):
        taken = []
        before = _reading(sampler, clock)
        start = clock()
        for j in range(length):
            call = calls[j % len(calls)]
            t0 = clock()
            call()
            taken.append(clock() - t0)
            done += 1
            if progress:
                progress(batch_size, "measure", done, max(planned, done))
        wall = clock() - start
        load = _contention(before, _reading(sampler, clock))
        too_busy = discard_contended and load is not None and load.over(rules.max_contention)
        windows.append(Window(summarize(taken, batch_size, wall), wall, load, too_busy))
        samples.append(taken)
        if too_busy:
            planned += length
        if windows_agree([w.summary for w in windows if not w.discarded], rules):
            break
    return _result(windows, samples, batch_size, len(calls), length, cfg)


@dataclass(frozen=True)
class _Reading:
    """A CPU reading and when it was taken: the middle of the call, give or take half of it (a /proc read
    takes tens of microseconds, a pause around it on a busy host milliseconds). Two readings cover the time
    between two such points, not the window's own wall, which on a short window differs by a large part."""

    cpu: CpuReading
    at_ns: int
    give_or_take_ns: int


def _reading(sampler: Sampler | None, clock: Timer) -> _Reading | None:
    if sampler is None:
        return None
    asked = clock()
    reading = sampler()
    answered = clock()
    return _Reading(reading, (asked + answered) // 2, (answered - asked) // 2)


def _contention(before: _Reading | None, after: _Reading | None) -> Contention | None:
    if before is None or after is None:
        return None
    return window_contention(
        before.cpu, after.cpu, after.at_ns - before.at_ns, before.give_or_take_ns + after.give_or_take_ns
    )


def _result(
    windows: list[Window],
    samples: list[list[int]],
    batch_size: int,
    distinct: int,
    length: int,
    cfg: BenchmarkingSection,
) -> BatchMeasurement:
    """Report the last ``agree_windows`` quiet windows; without that many, the least contended ones, flagged
    ``contended`` (and ``unstable`` when even those disagree)."""
    rules = cfg.stability
    quiet = [i for i, w in enumerate(windows) if not w.discarded]
    if len(quiet) >= rules.agree_windows:
        kept = quiet[-rules.agree_windows :]
    else:
        shares = [w.contention.share if w.contention else 0.0 for w in windows]
        by_load = sorted(range(len(windows)), key=lambda i: shares[i])
        kept = sorted(by_load[: rules.agree_windows])
    stable = windows_agree([windows[i].summary for i in kept], rules)  # contended windows may agree: flagged
    contended = any(windows[i].discarded for i in kept)
    used = [s for i in kept for s in samples[i]]
    summary = summarize(used, batch_size, sum(windows[i].wall_ns for i in kept))
    loads = [windows[i].contention for i in kept]
    host = combined([c for c in loads if c is not None]) if all(c is not None for c in loads) else None
    spread = repeat_spread(used, distinct)
    return BatchMeasurement(
        summary=summary,
        windows=[w.summary for w in windows],
        stable=stable,
        flags=quality_flags(summary, stable, rules, spread, contended),
        samples_ns=used,
        distinct=distinct,
        contention=[w.contention for w in windows],
        discarded=[w.discarded for w in windows],
        host=host,
        contended=contended,
        spread=spread,
        window_requests=length,
    )
