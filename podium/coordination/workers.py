"""Worker processes that are ready: a hash per process, written once its runtimes are warm and renewed while
it lives (it expires with the process), read by ``podium status`` and by anyone waiting for a worker."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis

from podium.coordination import keys

#: A ready key without renewal for this long is gone (its worker died or froze).
TTL_S = 60
#: How often a live worker renews it.
RENEW_S = 15.0


class WorkerPresence:
    """This worker process's ready key, renewed on a daemon thread until :meth:`stop`."""

    def __init__(self, client: redis.Redis, name: str, fields: Mapping[str, str]):
        self.client = client
        self.key = keys.worker(name)
        self.fields = {"name": name, **fields, "ready_at": f"{time.time():.3f}"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self) -> bool:
        """Write the key now; False when Redis is away (the renewal thread keeps trying)."""
        try:
            pipe = self.client.pipeline()
            pipe.hset(self.key, mapping={**self.fields, "updated": f"{time.time():.3f}"})
            pipe.expire(self.key, TTL_S)
            pipe.execute()
            return True
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.announce()
        self._thread = threading.Thread(target=self._renew, name="podium-presence", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            self.announce()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.key)


def ready_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Every worker process whose ready key is alive, by name."""
    out = []
    for key in client.scan_iter(match=keys.WORKER_PATTERN, count=1000):
        fields = client.hgetall(key)
        if fields:
            out.append(dict(fields))
    return sorted(out, key=lambda w: w.get("name", ""))
