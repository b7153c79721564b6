"""The fenced Redis lock: per ``benchmark_key`` for workers, and the aggregator's leader lock.

Acquire is one script: ``SET lock token NX PX ttl`` and, when it took, ``INCR fence`` (the fencing
token). Renew and release act only while the token still matches. A watchdog thread renews the TTL
(the token is not thread-local, unlike redis-py's ``Lock`` default) and raises ``lost`` when renewal
fails. ``commit`` writes the done marker and the result event in one script, only under the fence.
"""

from __future__ import annotations

import logging
import secrets
import threading

import redis

from podium.errors import PodiumError
from podium.streams import keys

log = logging.getLogger(__name__)

#: Default lock TTL; the watchdog renews it every third of that.
DEFAULT_TTL_MS = 30_000
#: Result events kept in the stream (approximate trim; MLflow holds them all).
STREAM_MAXLEN = 100_000

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
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
# KEYS: lock, fence, done, stream. ARGV: token, fencing token, done value, event, maxlen.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, 'lock not held'} end
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[2]) then return {0, 'fencing token superseded'} end
redis.call('SET', KEYS[3], ARGV[3])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'data', ARGV[4])
return {1, id}
"""


class LockError(PodiumError):
    """A fenced lock could not be taken or was lost."""


class LockBusy(LockError):
    """Another holder has the lock right now."""


class LockLost(LockError):
    """The lock expired or was taken over; the work must not be committed."""


class FencedLock:
    """``lock_key`` holds this holder's random token; ``fence_key`` counts acquisitions (the fencing token)."""

    def __init__(self, client: redis.Redis, lock_key: str, fence_key: str, ttl_ms: int = DEFAULT_TTL_MS):
        self.client = client
        self.lock_key = lock_key
        self.fence_key = fence_key
        self.key = lock_key.rsplit(":", 1)[-1]  # for logs: the benchmark key, or the lock's name
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(16)
        self.fencing_token: int | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._commit = client.register_script(_COMMIT)

    @classmethod
    def for_benchmark(cls, client: redis.Redis, benchmark_key: str, ttl_ms: int = DEFAULT_TTL_MS) -> FencedLock:
        return cls(client, keys.lock(benchmark_key), keys.fence(benchmark_key), ttl_ms)

    def acquire(self) -> int | None:
        """The fencing token, or None when another holder has the lock."""
        token = self._acquire(keys=[self.lock_key, self.fence_key], args=[self.token, self.ttl_ms])
        self.fencing_token = int(token) if token else None
        return self.fencing_token

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

    def commit(self, done_value: str, event: str) -> str:
        """Under the fence: SET the benchmark's done marker and XADD the result event; returns the entry id."""
        self.check()
        ok, detail = self._commit(
            keys=[self.lock_key, self.fence_key, keys.done(self.key), keys.BENCHMARKS_STREAM],
            args=[self.token, self.fencing_token, done_value, event, STREAM_MAXLEN],
        )
        if not ok:
            self.lost.set()
            raise LockLost(f"commit of benchmark {self.key} refused: {detail}")
        return str(detail)
