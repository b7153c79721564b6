"""A heartbeat hash per running benchmark: phase, progress, worker, device; it expires if the worker dies."""

from __future__ import annotations

import contextlib
import time

import redis

from podium.coordination import keys

#: A heartbeat older than this is gone (its worker died or stalled).
TTL_S = 60
#: Progress is written at most this often.
MIN_INTERVAL_S = 0.5


class Heartbeat:
    def __init__(self, client: redis.Redis, benchmark_key: str, worker: str, target: str, request_id: str):
        self.client = client
        self.key = keys.heartbeat(benchmark_key)
        self.base = {
            "worker": worker,
            "target": target,
            "request_id": request_id,
            "benchmark_key": benchmark_key,
            "started": f"{time.time():.3f}",
        }
        self._last = 0.0

    def beat(self, phase: str, progress: str = "", force: bool = False, **extra: str) -> None:
        now = time.monotonic()
        if not force and now - self._last < MIN_INTERVAL_S:
            return
        self._last = now
        fields = {**self.base, **extra, "phase": phase, "progress": progress, "updated": f"{time.time():.3f}"}
        try:
            pipe = self.client.pipeline()
            pipe.hset(self.key, mapping=fields)
            pipe.expire(self.key, TTL_S)
            pipe.execute()
        except redis.RedisError:
            pass  # a heartbeat is advisory; the lock watchdog guards correctness

    def clear(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)
