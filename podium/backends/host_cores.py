"""This host's usable cores (affinity and cgroup CPU quota, not ``os.cpu_count()``), and pinning this process
to some of them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from podium.core.cores import cgroup_path, parse_cfs, parse_cpu_max, usable_cores

log = logging.getLogger(__name__)

#: Where the kernel shows this process's cgroups and their CPU quota.
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """This process's CPU quota in CPUs (cgroup v2 ``cpu.max``, else v1 CFS quota), or None (no limit found)."""
    listing = _read(proc_cgroup) or ""
    own = (cgroup_path(listing) or "/").lstrip("/")
    for folder in dict.fromkeys([root / own, root]):  # the process's own cgroup, then the root (inside a container)
        text = _read(folder / "cpu.max")
        if text is not None:
            return parse_cpu_max(text)
    for folder in dict.fromkeys([root / "cpu" / own, root / "cpu", root / "cpu,cpuacct" / own, root / "cpu,cpuacct"]):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return parse_cfs(quota, period)
    return None


def affinity() -> list[int]:
    """The cores this process may run on (its affinity mask; all of ``os.cpu_count()`` where the OS has none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def host_cores() -> list[int]:
    """The cores this process's host lets it use: the affinity mask cut down to the cgroup's CPU quota."""
    return usable_cores(affinity(), cgroup_quota())


def pin(cores: list[int]) -> bool:
    """Pin every thread of this process to ``cores`` (threads started later inherit it); False where the OS
    does not allow it (not Linux, or a core outside the cgroup's cpuset)."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]
    pinned = False
    for tid in tasks:
        try:
            os.sched_setaffinity(tid, cores)
            pinned = True
        except OSError as exc:  # a thread that ended meanwhile, or cores this process may not use
            if tid in (0, os.getpid()):
                log.warning("Could not pin this worker to cores %s (%s); measuring unpinned.", cores, exc)
                return False
    return pinned
