"""Redis connections from a URL (``redis://``, ``rediss://`` TLS, ``user:password@``), with timeouts."""

from __future__ import annotations

import redis
from kombu.exceptions import OperationalError

#: What a client's send to the broker raises when Redis is away: kombu's and redis-py's errors, the socket's, and
#: Celery's RuntimeError when its result channel gave up reconnecting ("must be restarted": it need not be, it
#: reconnects on the next send once Redis is back).
SEND_ERRORS: tuple[type[Exception], ...] = (OperationalError, redis.RedisError, OSError, RuntimeError)


def why_not_sent(exc: BaseException) -> str:
    """One line for one of ``SEND_ERRORS`` (Celery's RuntimeError spans several and tells to restart)."""
    return "Redis is not reachable (result channel down)" if isinstance(exc, RuntimeError) else str(exc)


#: Seconds before a Redis connect or command is abandoned (a blocking read adds its own block time).
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 15.0


def connect(url: str, *, socket_timeout: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client that retries a command once on a dropped connection and checks idle connections."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        retry_on_timeout=True,
    )
