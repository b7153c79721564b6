"""The host's CPU readings for the contention check: /proc/stat for the usable cores, this process's CPU clock.

The arithmetic lives in :mod:`podium.core.contention`; this module only reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from podium.core.contention import CpuReading, busy_ticks

#: A source of readings; the measurement loop takes one (tests give it a scripted one).
Sampler = Callable[[], CpuReading]

PROC_STAT = Path("/proc/stat")


class ProcStatSampler:
    """Readings of the cores this process may run on (its affinity, read once when built), from /proc/stat,
    and of this process's CPU time (``CLOCK_PROCESS_CPUTIME_ID``: every thread, to the nanosecond)."""

    def __init__(self, path: Path = PROC_STAT):
        self.path = path
        self.cpus = sorted(os.sched_getaffinity(0))
        self.tick_ns = 10**9 // os.sysconf("SC_CLK_TCK")

    def __call__(self) -> CpuReading:
        ticks = busy_ticks(self.path.read_text(), self.cpus)
        return CpuReading(ticks * self.tick_ns, time.process_time_ns(), len(self.cpus), self.tick_ns)


def host_sampler(path: Path = PROC_STAT) -> Sampler | None:
    """This host's sampler, or None where the kernel gives no /proc/stat or affinity (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        sampler = ProcStatSampler(path)
        sampler()
    except (OSError, ValueError):
        return None
    return sampler
