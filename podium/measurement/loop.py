"""The measurement loop: warm up, then time requests in windows until they agree (perf_analyzer style).

The timed region is the call alone (inputs are built once, before). The clock is injected so the loop
can be tested deterministically; a backend's ``infer`` returns only when the work is done (it
synchronises CUDA itself), so reading the clock after it is honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from podium.core.config import BenchmarkingSection
from podium.core.stats import LatencySummary, quality_flags, summarize, windows_agree

Clock = Callable[[], int]
#: Progress callback: (batch_size, phase 'warmup'|'measure', done, total).
Progress = Callable[[int, str, int, int], None]


@dataclass(frozen=True)
class BatchMeasurement:
    summary: LatencySummary  # over the samples of the agreeing (last) windows
    windows: list[LatencySummary]
    stable: bool
    flags: list[str] = field(default_factory=list)
    #: The samples of the summary (ns, in the order taken), and the ordinal of the first among all calls made
    #: (warm-up included, from 0): sample ``j`` was call ``first_used + j``.
    samples_ns: list[int] = field(default_factory=list)
    first_used: int = 0


def measure_batch(
    call: Callable[[], object],
    batch_size: int,
    cfg: BenchmarkingSection,
    clock: Clock = time.perf_counter_ns,
    progress: Progress | None = None,
    on_measure_start: Callable[[], object] | None = None,
) -> BatchMeasurement:
    """Warm up, then measure windows of ``cfg.iterations`` timed calls until the last
    ``agree_windows`` agree or ``max_windows`` is reached (then the result is flagged ``unstable``).
    ``on_measure_start`` runs between warm-up and the first window (a server statistics snapshot)."""
    rules = cfg.stability
    for i in range(cfg.warmup_iterations):
        call()
        if progress:
            progress(batch_size, "warmup", i + 1, cfg.warmup_iterations)
    if on_measure_start:
        on_measure_start()
    windows: list[LatencySummary] = []
    window_samples: list[list[int]] = []
    walls: list[int] = []
    planned = rules.agree_windows * cfg.iterations
    done = 0
    for _ in range(rules.max_windows):
        samples = []
        start = clock()
        for _ in range(cfg.iterations):
            t0 = clock()
            call()
            samples.append(clock() - t0)
            done += 1
            if progress:
                progress(batch_size, "measure", done, max(planned, done))
        walls.append(clock() - start)
        windows.append(summarize(samples, batch_size, walls[-1]))
        window_samples.append(samples)
        if windows_agree(windows, rules):
            break
    stable = windows_agree(windows, rules)
    kept = window_samples[-rules.agree_windows :]
    used = [s for w in kept for s in w]
    summary = summarize(used, batch_size, sum(walls[-len(kept) :]))
    first_used = cfg.warmup_iterations + (len(window_samples) - len(kept)) * cfg.iterations
    return BatchMeasurement(summary, windows, stable, quality_flags(summary, stable, rules), used, first_used)
