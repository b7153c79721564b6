"""A host's usable cores, from what the kernel says (pure: the caller reads the files), and which of them a
measurement takes.

Usable cores are the process's affinity mask, cut down to the CPU quota of its cgroup when it has one
(``cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` on v1): a container limited to 1.5
CPUs on a 64-core host has 1 core to give, not 64 (``os.cpu_count()`` says 64).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"150000 100000"``): the quota in CPUs, or None (no limit)."""
    parts = text.split()
    if len(parts) not in (1, 2) or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``: the quota in CPUs, or None (``-1``: no limit)."""
    try:
        quota, period = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_path(proc_self_cgroup: str, controller: str = "cpu") -> str | None:
    """This process's cgroup path from ``/proc/self/cgroup``: the v1 line naming ``controller``, else the v2
    line (``0::/path``); None when neither is there."""
    unified = None
    for line in proc_self_cgroup.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            unified = fields[2]
        elif controller in fields[1].split(","):
            return fields[2]
    return unified


def usable_cores(affinity: Iterable[int], quota_cpus: float | None) -> list[int]:
    """The cores this process may use: its affinity, sorted, at most ``floor(quota)`` of them (at least one)."""
    cores = sorted(set(affinity))
    if quota_cpus is not None:
        cores = cores[: max(1, math.floor(quota_cpus + 1e-9))]
    return cores


def parse_core_list(text: str) -> list[int]:
    """``"0-3,8,10-11"`` (the kernel's and taskset's list format) -> ``[0, 1, 2, 3, 8, 10, 11]``."""
    cores: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first:
            raise ValueError(f"bad core range {part!r} in {text!r}: expected ranges like 0-3,8")
        cores.update(range(first, last + 1))
    return sorted(cores)


def format_core_list(cores: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 8]`` -> ``"0-3,8"``."""
    ordered = sorted(set(cores))
    spans: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        spans.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(spans)


@dataclass(frozen=True)
class Placement:
    """Where a measurement runs: the host, the cores it holds alone (pinned to them where the OS allows), and
    whether it shares cores with other measurements (``contended``, with the reason)."""

    host: str
    threads: int
    cores: tuple[int, ...]
    usable: tuple[int, ...]
    pinned: bool
    why_contended: str = ""

    @property
    def contended(self) -> bool:
        return bool(self.why_contended)

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "threads": self.threads,
            "cores": list(self.cores),
            "usable_cores": list(self.usable),
            "pinned": self.pinned,
            "contended": self.contended,
            **({"contended_why": self.why_contended} if self.contended else {}),
        }


def cores_needed(threads: int, usable: Sequence[int]) -> int:
    """How many cores a measurement with ``threads`` threads claims: one per thread, at most all of the host."""
    return max(1, min(threads, len(usable)))


def oversubscribed(threads: int, usable: Sequence[int]) -> str:
    """Why ``threads`` can never run without sharing on this host ('' when they fit)."""
    if threads > len(usable):
        return f"{threads} threads on a host with {len(usable)} usable core(s)"
    return ""
