"""Infrastructure outages wait; they do not spend a request's attempts.

A failure of the MLflow store (unreachable, locked, down) or a full disk says nothing about the model: the
request is retried with back-off, its attempt uncounted, for up to ``PODIUM_STORE_OUTAGE_S`` from the first such
failure (kept per request in Redis, so the wait spans workers). After that budget these failures count as
attempts like any other. Only the model's own failures (and requests that can never work) count from the start.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

import redis

from podium.coordination import keys
from podium.errors import BackendError, TrackingError

#: Errors of the operating system that mean the machine, not the request, is in trouble.
_FULL = {errno.ENOSPC, errno.EDQUOT}
#: Words in a store error that mean it could not be reached or could not answer now.
_UNAVAILABLE = (
    "database is locked",
    "unable to open database",
    "connection refused",
    "could not connect",
    "max retries exceeded",
    "temporarily unavailable",
    "server closed the connection",
    "connection reset",
    "timed out",
    "timeout",
    "no space left",
    "disk i/o error",
    "service unavailable",
    "bad gateway",
    "internal_error",
    "error code 5",
)
#: Back-off between outage retries doubles from ``PODIUM_RETRY_BACKOFF_S`` up to this.
MAX_WAIT_S = 30.0


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def outage_of(exc: BaseException) -> str | None:
    """What infrastructure failure ``exc`` is (a short phrase), or None when it may be the request's own."""
    chain = list(_chain(exc))
    if any(isinstance(e, OSError) and e.errno in _FULL for e in chain):
        return "a full disk"
    if any(isinstance(e, BackendError) for e in chain):  # the inference server or the model: the request's own
        return None
    store_error = False
    for e in chain:
        if isinstance(e, (ConnectionError, TimeoutError)):
            return "the MLflow store unreachable"
        name = type(e).__name__
        if name in {"OperationalError", "DisconnectionError", "InterfaceError"} or name.endswith("ConnectionError"):
            return "the MLflow store unavailable"
        if isinstance(e, TrackingError) or name == "MlflowException":
            store_error = True
    if store_error:
        text = " ".join(str(e) for e in _chain(exc)).lower()
        if any(word in text for word in _UNAVAILABLE):
            return "the MLflow store unavailable"
    return None


class OutageBudget:
    """The time one request has spent waiting out outages, in Redis (``podium:outage:{request_id}``)."""

    def __init__(self, client: redis.Redis, budget_s: float, backoff_s: float):
        self.client = client
        self.budget_s = budget_s
        self.backoff_s = backoff_s

    def wait(self, request_id: str, now: float | None = None) -> float | None:
        """Seconds to wait before the next try, or None once the budget is spent (count it as an attempt)."""
        now = time.time() if now is None else now
        key = keys.outage(request_id)
        pipe = self.client.pipeline()
        pipe.hsetnx(key, "since", f"{now:.3f}")
        pipe.hincrby(key, "tries", 1)
        pipe.hget(key, "since")
        pipe.expire(key, int(self.budget_s * 2 + 3600))
        _, tries, since, _ = pipe.execute()
        if now - float(since) >= self.budget_s:
            return None
        return min(max(self.backoff_s, 0.1) * 2 ** (int(tries) - 1), MAX_WAIT_S, max(self.budget_s / 4, 0.1))

    def clear(self, request_id: str) -> None:
        self.client.delete(keys.outage(request_id))
