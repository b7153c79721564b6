"""Test doubles made by subclassing production classes (production code carries no test seams)."""

from __future__ import annotations

from podium.streams.lock import FencedLock


class StalledLock(FencedLock):
    """A lock whose holder stalls: its watchdog believes it renewed, while the TTL runs out in Redis (a
    process paused by GC or SIGSTOP). Whatever it then commits must be refused by the fence."""

    def renew(self) -> bool:
        return True
