"""The fenced Redis lock: per ``benchmark_key`` for workers, and the aggregator's leader lock.

Acquire is one script: ``SET lock token NX PX ttl`` and, when it took, ``INCR fence`` (the fencing
token) and Redis's clock (the one clock every worker shares). Renew and release act only while the token
still matches. A watchdog thread renews the TTL (the token is not thread-local, unlike redis-py's ``Lock``
default) and raises ``lost`` when renewal fails.

A benchmark commits in two fenced steps around marking its MLflow run FINISHED, so every crash point is
recoverable and Redis never names a run MLflow does not hold FINISHED:
``prepare`` sets the done marker to ``pending:<run>`` (not a reusable answer: whoever locks the key next
ends that run and measures again), then the run is marked FINISHED, then ``commit`` sets the marker to the
run and adds the result event in one script.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import redis

from podium.errors import LockError, LockLost
from podium.streams import keys

log = logging.getLogger(__name__)

#: Default lock TTL; the watchdog renews it every third of that.
DEFAULT_TTL_MS = 30_000
#: Result events kept in the stream (approximate trim; MLflow holds them all).
STREAM_MAXLEN = 100_000
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
# KEYS: lock, fence, done, stream. ARGV: token, fencing token, done value, marker ttl s (0: none), event
# ('' = none), maxlen.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, 'lock not held'} end
if tonumber(redis.call('GET', KEYS[2])) ~= tonumber(ARGV[2]) then return {0, 'fencing token superseded'} end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
else
  redis.call('SET', KEYS[3], ARGV[3])
end
if ARGV[5] == '' then return {1, ''} end
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'data', ARGV[5])
return {1, id}
"""
#: A done marker written before the run is FINISHED: the commit is in progress (or died there).
PENDING_PREFIX = "pending:"


def committed_run(marker: str | None) -> str | None:
    """The run a done marker answers with, or None (no marker, or a commit still pending)."""
    if not marker or marker.startswith(PENDING_PREFIX):
        return None
    return marker


def pending_run(marker: str | None) -> str | None:
    """The run of a commit that was prepared but never completed, or None."""
    if marker and marker.startswith(PENDING_PREFIX):
        return marker.removeprefix(PENDING_PREFIX)
    return None


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
        self._commit = client.register_script(_COMMIT)

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

    def prepare(self, run_id: str) -> None:
        """Under the fence: mark the commit of ``run_id`` as in progress (``pending:<run>``)."""
        self._fenced_write(f"{PENDING_PREFIX}{run_id}", "", "prepare")

    def commit(self, run_id: str, event: str) -> str:
        """Under the fence: SET the done marker to ``run_id`` and XADD the result event; returns the entry id."""
        return self._fenced_write(run_id, event, "commit")

    def _fenced_write(self, marker: str, event: str, step: str) -> str:
        self.check()
        ok, detail = self._commit(
            keys=[self.lock_key, self.fence_key, keys.done(self.key), keys.BENCHMARKS_STREAM],
            args=[self.token, self.fencing_token, marker, self.marker_ttl_s, event, STREAM_MAXLEN],
        )
        if not ok:
            self.lost.set()
            raise LockLost(f"{step} of benchmark {self.key} refused: {detail}")
        return str(detail)
