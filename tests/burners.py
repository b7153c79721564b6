"""CPU-burning processes: the "others" of the contention check, for tests and benches. Stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys

BURN = "while True: pass"


class Burners:
    """``count`` processes that each keep one core busy until stopped (by their PIDs, never by name)."""

    def __init__(self, count: int):
        self.procs = [subprocess.Popen([sys.executable, "-c", BURN], start_new_session=True) for _ in range(count)]

    def cpu_ns(self) -> int:
        """The CPU time the burners used so far (user + system, from /proc/PID/stat, in clock ticks)."""
        tick_ns = 10**9 // os.sysconf("SC_CLK_TCK")
        total = 0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * tick_ns  # utime, stime (fields 14 and 15)
        return total

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()  # this PID only
            proc.wait(timeout=10)
        self.procs = []

    def __enter__(self) -> Burners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
