"""The producers' sent log ``podium:sent``: each request sent (task id, key, queue, the request), capped at
``SENT_MAXLEN`` entries; read by ``podium backfill --sent`` to re-send what the queue lost.

It lives in the same Redis as the queue, so it covers a queue that lost messages while the rest of Redis stayed
(eviction before the policy check stopped intake, a purge, a deleted queue key), not a FLUSHALL: then only
MLflow remains, and ``podium backfill`` re-sends every champion with no benchmark under the current config.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence

import redis

from podium.coordination import keys
from podium.core.lost import Sent

#: Entries kept (approximate trim): a request is about 2 KB, so about 20 MB at most.
SENT_MAXLEN = 10_000


def note_sent(client: redis.Redis, task_id: str, benchmark_key: str, queue: str, request: str) -> None:
    client.xadd(
        keys.SENT_STREAM,
        {"task": task_id, "key": benchmark_key, "queue": queue, "request": request},
        maxlen=SENT_MAXLEN,
        approximate=True,
    )


def read_sent(client: redis.Redis, since_ms: int) -> list[Sent]:
    out = []
    for entry_id, fields in client.xrange(keys.SENT_STREAM, min=f"{since_ms}-0"):
        if {"task", "key", "queue", "request"} <= set(fields):
            out.append(Sent(entry_id, fields["task"], fields["key"], fields["queue"], fields["request"]))
    return out


def waiting_task_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Task ids of the messages waiting in ``queues`` or held unacknowledged by a worker."""
    raws = [m for q in sorted(set(queues)) for m in client.lrange(q, 0, -1)]
    raws += [json.dumps(json.loads(v)[0]) for v in client.hvals(keys.UNACKED) if v]
    found = set()
    for raw in raws:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            task = json.loads(raw).get("headers", {}).get("id")
            if task:
                found.add(str(task))
    return found


def existing(client: redis.Redis, names: Sequence[str]) -> set[str]:
    """Which of the keys ``names`` exist (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    return {name for name, there in zip(names, pipe.execute(), strict=True) if there}


def drop_sent(client: redis.Redis, entry_ids: Sequence[str]) -> None:
    """Forget entries once re-sent (the new send is noted under its own task id)."""
    if entry_ids:
        client.xdel(keys.SENT_STREAM, *entry_ids)
