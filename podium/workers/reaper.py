"""A dead worker's messages come back in seconds, not after the broker's visibility timeout.

kombu's Redis transport keeps every delivered, unacknowledged message in the ``unacked`` hash (delivery tag ->
message) and its delivery time in ``unacked_index``, and puts it back on its queue only once it is older than
the visibility timeout (hours, sized to the longest benchmark). podium adds who holds each one: a worker's main
process records the delivery tag with its node name in ``podium:inflight`` when it receives a message, and
renews its liveness key ``podium:node:{name}`` while it lives. Every worker's main process runs :func:`reap`
periodically: a message whose holder's liveness key has expired (SIGKILL, a lost host) goes back to the front of
its queue. One script checks the holder is still the recorded one and still dead, and that the message is still
unacknowledged, before moving it, so any number of reapers can run at once and a live worker's message is never
touched. Messages without a record (held by a process that died before recording) still come back after the
visibility timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import redis

from podium.coordination import keys

log = logging.getLogger(__name__)

#: kombu's separator inside a binding entry: routing key, pattern, queue.
_BINDING_SEP = "\x06\x16"

# KEYS: unacked, unacked_index, inflight, holder's liveness key ('' checks none), queue.
# ARGV: delivery tag, inflight record as read ('' = any), unacked message as read, message to push back.
_REQUEUE = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if KEYS[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[5], ARGV[4])
return 1
"""
# KEYS: unacked, inflight. ARGV: delivery tag, inflight record as read. Drops a record whose message is gone.
_PRUNE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[2], ARGV[1])
"""


def record(client: redis.Redis, delivery_tag: str, node: str, task_id: str) -> None:
    """This main process holds ``delivery_tag`` (called when it receives the message)."""
    fields = {"node": node, "task_id": task_id, "received": round(time.time(), 3)}
    client.hset(keys.INFLIGHT, delivery_tag, json.dumps(fields))


def forget(client: redis.Redis, delivery_tag: str) -> None:
    """The message was acknowledged or given back."""
    client.hdel(keys.INFLIGHT, delivery_tag)


def _queue_of(client: redis.Redis, exchange: str, routing_key: str) -> str:
    """The queue a message was routed to: kombu's binding of its exchange (podium: one queue per target)."""
    if exchange:
        for entry in client.smembers(f"{keys.QUEUE_BINDING_PREFIX}{exchange}"):
            rk, _, queue = entry.split(_BINDING_SEP)
            if rk == routing_key:
                return queue
    return routing_key


def requeue(client: redis.Redis, delivery_tag: str, holder: dict[str, Any] | None = None, expected: str = "") -> bool:
    """Put an unacknowledged message back at the front of its queue, as kombu restores it; with ``holder`` only
    while that holder's liveness key is gone and ``expected`` is still its record. False when nothing moved."""
    raw = client.hget(keys.UNACKED, delivery_tag)
    if raw is None:
        return False
    payload, exchange, routing_key = json.loads(raw)
    with contextlib.suppress(KeyError, TypeError):
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
    queue = _queue_of(client, exchange, routing_key)
    liveness = keys.node(holder["node"]) if holder else ""
    moved = client.eval(
        _REQUEUE,
        5,
        keys.UNACKED,
        keys.UNACKED_INDEX,
        keys.INFLIGHT,
        liveness,
        queue,
        delivery_tag,
        expected,
        raw,
        json.dumps(payload),
    )
    return bool(moved)


def reap(client: redis.Redis) -> int:
    """Requeue every recorded message whose holder is dead; drop records of messages no longer unacknowledged.
    Returns how many messages went back to their queues."""
    moved = 0
    for tag, raw in client.hgetall(keys.INFLIGHT).items():
        try:
            holder = json.loads(raw)
            node = str(holder["node"])
        except (ValueError, KeyError, TypeError):
            holder, node = None, ""
        if not client.hexists(keys.UNACKED, tag) or holder is None:
            client.eval(_PRUNE, 2, keys.UNACKED, keys.INFLIGHT, tag, raw)
            continue
        if client.exists(keys.node(node)):
            continue
        if requeue(client, tag, holder, raw):
            moved += 1
            log.warning(
                "Requeued message %s (task %s): its worker %s stopped renewing its liveness key.",
                tag,
                holder.get("task_id", "?"),
                node,
            )
    return moved


class Liveness:
    """This main process's liveness key, renewed every third of ``ttl_s``, and the reaper run as often, on a
    daemon thread (its own Redis connection) until :meth:`stop`.

    The reaper runs only after this process has renewed its own key without a failure for a whole ``ttl_s``:
    after Redis was away (or this process was frozen) for longer than the TTL, every worker's key has expired,
    and reaping at once would requeue the messages of workers that are alive; one TTL later, they have all
    renewed theirs."""

    def __init__(self, client: redis.Redis, node: str, ttl_s: float):
        self.client = client
        self.node = node
        self.key = keys.node(node)
        self.ttl_ms = max(int(ttl_s * 1000), 1000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        self.client.set(self.key, f"{time.time():.3f}", px=self.ttl_ms)

    def start(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.renew()
        self._thread = threading.Thread(target=self._run, name="podium-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        healthy_since = time.monotonic()
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.renew()
                if time.monotonic() - healthy_since >= self.ttl_ms / 1000:
                    reap(self.client)
            except redis.RedisError as exc:  # Redis away: kombu's own visibility timeout still stands
                healthy_since = time.monotonic()
                log.warning("Could not renew liveness or reap dead workers' messages: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)
