"""The fenced commit of a benchmark: its done marker and its result event, written only under the fence.

A benchmark commits in two fenced steps around marking its MLflow run FINISHED, so every crash point is
recoverable and Redis never names a run MLflow does not hold FINISHED:
``prepare`` sets the done marker to ``pending:<run>`` (not a reusable answer: whoever locks the key next
ends that run and measures again), then the run is marked FINISHED, then ``commit`` sets the marker to the
run and adds the result event in one script. Both are refused, and the lock marked lost, when the lock no
longer holds this holder's token or a newer fencing token was handed out (:mod:`podium.coordination.lock`).
"""

from __future__ import annotations

from podium.coordination import keys
from podium.coordination.lock import FencedLock
from podium.errors import LockLost

#: Result events kept in the stream (approximate trim; MLflow holds them all).
STREAM_MAXLEN = 100_000
#: A done marker written before the run is FINISHED: the commit is in progress (or died there).
PENDING_PREFIX = "pending:"

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


class FencedCommit:
    """The commit of the benchmark a held :class:`FencedLock` guards (its ``key`` names the done marker)."""

    def __init__(self, lock: FencedLock):
        self.lock = lock
        self._write = lock.client.register_script(_COMMIT)

    def prepare(self, run_id: str) -> None:
        """Under the fence: mark the commit of ``run_id`` as in progress (``pending:<run>``)."""
        self._fenced_write(f"{PENDING_PREFIX}{run_id}", "", "prepare")

    def commit(self, run_id: str, event: str) -> str:
        """Under the fence: SET the done marker to ``run_id`` and XADD the result event; returns the entry id."""
        return self._fenced_write(run_id, event, "commit")

    def _fenced_write(self, marker: str, event: str, step: str) -> str:
        lock = self.lock
        lock.check()
        ok, detail = self._write(
            keys=[lock.lock_key, lock.fence_key, keys.done(lock.key), keys.BENCHMARKS_STREAM],
            args=[lock.token, lock.fencing_token, marker, lock.marker_ttl_s, event, STREAM_MAXLEN],
        )
        if not ok:
            lock.lost.set()
            raise LockLost(f"{step} of benchmark {lock.key} refused: {detail}")
        return str(detail)
