"""The fenced Redis lock: per ``benchmark_key`` for workers, and the aggregator's leader lock.

Acquire is one script: ``SET lock token NX PX ttl`` and, when it took, ``INCR fence`` (the fencing
token) and Redis's clock (the one clock every worker shares). Renew and release act only while the token
still matches. A watchdog thread renews the TTL (the token is not thread-local, unlike redis-py's ``Lock``
default) and raises ``lost`` when renewal fails.

What the lock guards is written under its fence by :mod:`podium.coordination.commit` (the done marker and the
result event of a benchmark), refused once the token or the fencing token moved.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import redis

from podium.coordination import keys
from podium.errors import LockError, LockLost

log = logging.getLogger(__name__)

#: Default lock TTL; the watchdog renews it every third of that.
DEFAULT_TTL_MS = 30_000
#: Default lifetime of done markers and fencing counters (MLflow stays the truth after they expire).
DEFAULT_MARKER_TTL_S = 90 * 24 * 3600

# KEYS: lock, fence. ARGV: token, ttl ms, fence ttl s (0: none). Returns {fence, seconds, microseconds}.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
  local now = redis.call('TIME')
  return {fence, now[1], now[2]}
end
return false
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class FencedLock:
    """``lock_key`` holds this holder's random token; ``fence_key`` counts acquisitions (the fencing token)."""

    def __init__(
        self,
        client: redis.Redis,
        lock_key: str,
        fence_key: str,
        ttl_ms: int = DEFAULT_TTL_MS,
        marker_ttl_s: int = 0,
    ):
        self.client = client
        self.lock_key = lock_key
        self.fence_key = fence_key
        self.key = lock_key.rsplit(":", 1)[-1]  # the benchmark key (or the lock's name): its done marker, logs
        self.ttl_ms = ttl_ms
        self.marker_ttl_s = marker_ttl_s
        self.token = secrets.token_hex(16)
        self.fencing_token: int | None = None
        #: Redis's clock when the lock was taken (epoch ms), and this process's monotonic clock then.
        self.acquired_at_ms: int | None = None
        self._acquired_mono = 0.0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def for_benchmark(
        cls,
        client: redis.Redis,
        benchmark_key: str,
        ttl_ms: int = DEFAULT_TTL_MS,
        marker_ttl_s: int = DEFAULT_MARKER_TTL_S,
    ) -> FencedLock:
        return cls(client, keys.lock(benchmark_key), keys.fence(benchmark_key), ttl_ms, marker_ttl_s)

    def acquire(self) -> int | None:
        """The fencing token, or None when another holder has the lock."""
        taken = self._acquire(keys=[self.lock_key, self.fence_key], args=[self.token, self.ttl_ms, self.marker_ttl_s])
        if not taken:
            self.fencing_token = None
            return None
        fence, seconds, micros = (int(x) for x in taken)
        self.fencing_token = fence
        self.acquired_at_ms = seconds * 1000 + micros // 1000
        self._acquired_mono = time.monotonic()
        return fence

    def now_ms(self) -> int:
        """Now on Redis's clock (as read at acquire, advanced by this process's monotonic clock): the time
        podium stamps runs with, so a worker with a skewed clock writes the same times as the others."""
        if self.acquired_at_ms is None:
            raise LockError(f"lock {self.lock_key} was never acquired")
        return self.acquired_at_ms + int((time.monotonic() - self._acquired_mono) * 1000)

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.lock_key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
        try:
            return bool(self._release(keys=[self.lock_key], args=[self.token]))
        except redis.RedisError as exc:  # it expires on its own within the TTL
            log.warning("Could not release the lock of %s (%s); it expires within %d ms.", self.key, exc, self.ttl_ms)
            return False

    def start_watchdog(self) -> None:
        self._watchdog = threading.Thread(target=self._watch, name=f"lock-watchdog-{self.key[:8]}", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                ok = self.renew()
            except redis.RedisError as exc:
                log.warning("Lock renewal of %s failed: %s", self.key, exc)
                ok = False
            if not ok:
                log.error("Lost the lock %s; what it guards will not be committed.", self.lock_key)
                self.lost.set()
                return

    def check(self) -> None:
        if self.lost.is_set():
            raise LockLost(f"lock {self.lock_key} was lost (expired or taken over)")
