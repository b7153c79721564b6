"""How a worker takes the fenced lock of a benchmark key and commits under it: a small port, so what a worker
does under the lock is one code path whichever lock it holds (tests pass the doubles of ``podium.testing``)."""

from __future__ import annotations

from typing import Protocol

import redis

from podium.coordination.commit import FencedCommit
from podium.coordination.lock import FencedLock


class Fencing(Protocol):
    def lock(self, client: redis.Redis, benchmark_key: str, ttl_ms: int, marker_ttl_s: int) -> FencedLock:
        """The (not yet acquired) fenced lock of ``benchmark_key``."""
        ...

    def commit(self, lock: FencedLock) -> FencedCommit:
        """The fenced commit of what ``lock`` guards."""
        ...


class RedisFencing:
    """The fenced lock and commit of :mod:`podium.coordination.lock` and :mod:`podium.coordination.commit`."""

    def lock(self, client: redis.Redis, benchmark_key: str, ttl_ms: int, marker_ttl_s: int) -> FencedLock:
        return FencedLock.for_benchmark(client, benchmark_key, ttl_ms, marker_ttl_s)

    def commit(self, lock: FencedLock) -> FencedCommit:
        return FencedCommit(lock)
