"""What a running benchmark task holds, written where its worker's main process can read it.

A task can end outside its own code: its process killed by the hard time limit, lost (OOM, ``kill -9``), or
stopped with its worker. The main process survives (or has the few seconds of a warm shutdown) but knows only
the message. So the task writes, in ``podium:hold:{task_id}``, the request and attempt it counted and, once it
creates the key's lock, the lock's token; the main process then releases exactly that lock, records why the run
ended (``podium:endings``: the next task of any worker ends the run FAILED with that reason, see
:func:`podium.workers.sweeper.end_recorded`) and retries or dead-letters the request (:mod:`podium.workers.endings`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import redis

from podium.coordination import keys
from podium.coordination.commit import FencedCommit
from podium.coordination.lock import FencedLock
from podium.workers.fencing import Fencing

if TYPE_CHECKING:  # execute imports the sweeper, which imports this module
    from podium.workers.execute import WorkerDeps

# KEYS: lock, endings hash, heartbeat, hold. ARGV: lock token, benchmark_key, ending record, request_id.
# Releases the lock only while it holds the task's token; drops the heartbeat only while it is the task's.
_ABANDON = """
local released = 0
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if redis.call('HGET', KEYS[3], 'request_id') == ARGV[4] then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[4])
return released
"""


def hold(deps: WorkerDeps, task_id: str, request_id: str, benchmark_key: str, attempt: int, ttl_s: int) -> WorkerDeps:
    """Record the task's request and attempt; return ``deps`` whose locks record their token in the hold too."""
    key = keys.hold(task_id)
    fields = {"request_id": request_id, "benchmark_key": benchmark_key, "attempt": attempt, "worker": deps.worker}
    pipe = deps.redis.pipeline()
    pipe.hset(key, mapping=fields)
    pipe.expire(key, ttl_s)
    pipe.execute()
    return dataclasses.replace(deps, fencing=HoldingFencing(deps.fencing, key))


class HoldingFencing:
    """A worker's fencing whose every lock records its key and token in the task's hold."""

    def __init__(self, fencing: Fencing, hold_key: str):
        self.fencing = fencing
        self.hold_key = hold_key

    def lock(self, client: redis.Redis, benchmark_key: str, ttl_ms: int, marker_ttl_s: int) -> FencedLock:
        lock = self.fencing.lock(client, benchmark_key, ttl_ms, marker_ttl_s)
        client.hset(self.hold_key, mapping={"lock": lock.lock_key, "token": lock.token})
        return lock

    def commit(self, lock: FencedLock) -> FencedCommit:
        return self.fencing.commit(lock)


def release_hold(client: redis.Redis, task_id: str) -> None:
    """The task ended in its own code: nothing to clean up for it."""
    with contextlib.suppress(redis.RedisError):
        client.delete(keys.hold(task_id))


def read_hold(client: redis.Redis, task_id: str) -> dict[str, str]:
    return client.hgetall(keys.hold(task_id))


def abandon(client: redis.Redis, task_id: str, held: dict[str, str], reason: str) -> bool:
    """The task's process is gone: release its lock (when still its own), record why its run ended, drop its
    heartbeat and hold. True when the lock was released here."""
    benchmark_key = held["benchmark_key"]
    ending = json.dumps({"worker": held.get("worker", ""), "reason": reason, "at": round(time.time(), 3)})
    released = client.eval(
        _ABANDON,
        4,
        held.get("lock") or keys.lock(benchmark_key),
        keys.ENDINGS,
        keys.heartbeat(benchmark_key),
        keys.hold(task_id),
        held.get("token", ""),
        benchmark_key,
        ending,
        held.get("request_id", ""),
    )
    return bool(released)


def endings(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Recorded endings: benchmark_key -> {worker, reason, at, raw}."""
    out = {}
    for key, raw in client.hgetall(keys.ENDINGS).items():
        with contextlib.suppress(ValueError, TypeError):
            out[key] = {**json.loads(raw), "raw": raw}
    return out


_DROP_ENDING = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


def drop_ending(client: redis.Redis, benchmark_key: str, raw: str) -> None:
    """Forget an ending once its run is ended (unless a newer one was recorded meanwhile)."""
    client.eval(_DROP_ENDING, 1, keys.ENDINGS, benchmark_key, raw)
