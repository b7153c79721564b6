"""The legacy epoch: a counter that says "legacy benchmark runs may have appeared", so every worker forgets
what it learned about which studies have runs without a ``benchmark_key`` (see
:meth:`podium.tracking.tracker.MlflowTracking.benchmark_exists`)."""

from __future__ import annotations

import logging

import redis

from podium.coordination import keys

log = logging.getLogger(__name__)


def read_epoch(client: redis.Redis) -> int:
    return int(client.get(keys.LEGACY_EPOCH) or 0)


def bump_epoch(client: redis.Redis, why: str) -> None:
    """Tell every worker to look for legacy runs again; a Redis failure only delays that (by the cache TTL)."""
    try:
        client.incr(keys.LEGACY_EPOCH)
    except redis.RedisError as exc:
        log.warning("Could not bump the legacy epoch after %s (%s); workers notice within minutes.", why, exc)
