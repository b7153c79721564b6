"""Test doubles made by subclassing production classes (production code carries no test seams)."""

from __future__ import annotations

from collections.abc import Callable

from podium.streams.lock import FencedLock


class StalledLock(FencedLock):
    """A lock whose holder stalls: its watchdog believes it renewed, while the TTL runs out in Redis (a
    process paused by GC or SIGSTOP). Whatever it then commits must be refused by the fence."""

    def renew(self) -> bool:
        return True


class StoreLockedAtCommit(FencedLock):
    """A lock whose ``prepare`` (the step just before the run is marked FINISHED) is followed by someone
    taking an exclusive lock on the sqlite store, as a backup job or a second writer would."""

    store_lock: Callable[[], None] = staticmethod(lambda: None)

    def prepare(self, run_id: str) -> None:
        super().prepare(run_id)
        type(self).store_lock()


class ManualClock:
    """A ``podium.core.clock.Clock`` that moves only when the test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
