"""Contention (pure): how much of the usable cores' capacity other processes took while podium measured.

Two cumulative readings bracket a window: the host's busy time on the usable cores (every process, time stolen
by the hypervisor included; from ``/proc/stat``, in clock ticks) and podium's own CPU time (all its threads,
in ns). What the others took is the difference of the two, as a share of the window's capacity (wall time x
usable cores). The host counters move in ticks (10 ms on most kernels), so a reading is known only to within
one tick per core: a window counts as contended only when its share exceeds the limit by more than that.
The files are read by :mod:`podium.measurement.cpu_load`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Fields of a ``cpuN`` line of /proc/stat that are busy time: user, nice, system, irq, softirq, steal
#: (guest time is already inside user); idle and iowait are not.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class CpuReading:
    """One cumulative reading: the usable cores' busy time and this process's CPU time, both since boot/start."""

    host_busy_ns: int
    own_ns: int
    #: How many cores ``host_busy_ns`` covers (the process's affinity), and the resolution of their counters.
    cores: int
    tick_ns: int


@dataclass(frozen=True)
class Contention:
    """Others' CPU time over one or more windows, against the capacity those windows had."""

    others_ns: int
    capacity_ns: int
    #: How far ``others_ns`` can be off from the counters' resolution (one tick per core per window).
    error_ns: int
    #: How far it can be off because a reading's instant is known only within its call (a paused /proc read):
    #: reported, not subtracted when judging a window (a busy host pauses the readings most, and would
    #: otherwise hide its own contention).
    timing_ns: int = 0

    @property
    def share(self) -> float:
        """Others' busy time as a share of the usable cores' capacity (0: nobody else, 1: every core taken; the
        counters' rounding can overshoot a short window's capacity: capped at 1)."""
        return min(1.0, self.others_ns / self.capacity_ns) if self.capacity_ns > 0 else 0.0

    @property
    def resolution(self) -> float:
        return self.error_ns / self.capacity_ns if self.capacity_ns > 0 else 0.0

    @property
    def timing(self) -> float:
        """The readings' timing uncertainty as a share of the capacity."""
        return self.timing_ns / self.capacity_ns if self.capacity_ns > 0 else 0.0

    def over(self, max_share: float) -> bool:
        """Clearly above ``max_share``: by more than the reading's resolution."""
        return self.share - self.resolution > max_share


def busy_ticks(proc_stat: str, cpus: Iterable[int]) -> int:
    """Busy clock ticks of the given cores since boot, from the text of /proc/stat (``cpuN`` lines)."""
    wanted = {f"cpu{c}" for c in cpus}
    total = 0
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:]]
            total += sum(values[i] for i in BUSY_FIELDS if i < len(values))
            wanted.discard(fields[0])
    if wanted:
        raise ValueError(f"/proc/stat has no line for {', '.join(sorted(wanted))}")
    return total


def window_contention(before: CpuReading, after: CpuReading, wall_ns: int, timing_ns: int = 0) -> Contention:
    """What others took between two readings ``wall_ns`` apart (never below 0: the counters' rounding).
    ``timing_ns``: how far the two readings' instants may be off together (a reading is taken somewhere inside
    a call that a busy host can pause): others may have used every core for that long, or not at all."""
    others = (after.host_busy_ns - before.host_busy_ns) - (after.own_ns - before.own_ns)
    timing = after.cores * max(0, timing_ns)
    return Contention(max(0, others), max(0, wall_ns) * after.cores, after.cores * after.tick_ns, timing)


def combined(windows: Sequence[Contention]) -> Contention:
    """Several windows as one: their others' time over their capacity."""
    return Contention(
        sum(w.others_ns for w in windows),
        sum(w.capacity_ns for w in windows),
        sum(w.error_ns for w in windows),
        sum(w.timing_ns for w in windows),
    )
