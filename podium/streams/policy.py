"""Is this Redis safe to keep requests in? Its eviction policy and persistence, read with ``INFO``.

Redis holds the queued requests, the locks, fences and done markers. Under ``maxmemory`` with an evicting
policy (``allkeys-lru`` is a common default of managed Redis) it drops them silently; only ``noeviction``
turns memory pressure into errors podium can retry. Without AOF a restart loses what was queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from podium.errors import ConfigError
from podium.settings.env import redact_url

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class RedisPolicy:
    maxmemory_policy: str | None  # None: the server would not say (INFO refused)
    maxmemory: int | None
    aof_enabled: bool | None

    @property
    def evicts(self) -> bool:
        return self.maxmemory_policy is not None and self.maxmemory_policy != SAFE_POLICY

    def describe(self) -> str:
        if self.maxmemory_policy is None:
            return "unknown (INFO refused)"
        limit = f"maxmemory {self.maxmemory} bytes" if self.maxmemory else "no maxmemory"
        aof = {True: "AOF on", False: "AOF off", None: "AOF unknown"}[self.aof_enabled]
        return f"maxmemory-policy {self.maxmemory_policy}, {limit}, {aof}"


def read_policy(client: redis.Redis) -> RedisPolicy:
    try:
        memory = client.info("memory")
        persistence = client.info("persistence")
    except redis.ResponseError:  # INFO renamed or refused (an embedded or locked-down server)
        return RedisPolicy(None, None, None)
    aof = persistence.get("aof_enabled")
    return RedisPolicy(
        maxmemory_policy=memory.get("maxmemory_policy"),
        maxmemory=int(memory.get("maxmemory", 0) or 0),
        aof_enabled=None if aof is None else bool(int(aof)),
    )


def problems(policy: RedisPolicy, accept_eviction: bool) -> tuple[str | None, list[str]]:
    """(why podium must not start, or None; warnings) for a Redis with this policy."""
    warnings = []
    refusal = None
    if policy.maxmemory_policy is None:
        warnings.append("could not read Redis's maxmemory-policy (INFO refused); make sure it is noeviction")
    elif policy.evicts:
        message = (
            f"Redis evicts keys under memory pressure (maxmemory-policy {policy.maxmemory_policy}): queued "
            "requests, locks and done markers can vanish silently"
        )
        if accept_eviction:
            warnings.append(message + " (accepted by PODIUM_ACCEPT_REDIS_EVICTION)")
        else:
            refusal = (
                message + "; set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction, or in "
                "redis.conf), or accept the loss with PODIUM_ACCEPT_REDIS_EVICTION=true"
            )
    if policy.aof_enabled is False:
        warnings.append(
            "Redis has AOF off: a restart loses queued requests and podium's keys (set appendonly yes to keep them)"
        )
    return refusal, warnings


def check_redis_policy(client: redis.Redis, url: str, accept_eviction: bool, who: str) -> RedisPolicy:
    """Refuse to start ``who`` on an evicting Redis (``ConfigError``); log the warnings; return the policy."""
    policy = read_policy(client)
    refusal, warnings = problems(policy, accept_eviction)
    if refusal is not None:
        raise ConfigError(f"{who} will not start on {redact_url(url)}: {refusal}")
    for warning in warnings:
        log.warning("%s on %s: %s.", who, redact_url(url), warning)
    return policy
