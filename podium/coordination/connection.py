"""Redis connections from a URL (``redis://``, ``rediss://`` TLS, ``user:password@``), with timeouts."""

from __future__ import annotations

import redis

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
