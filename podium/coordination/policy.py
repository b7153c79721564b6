"""Is this Redis safe to keep requests in? Its eviction policy and persistence, read with ``INFO``.

Redis holds the queued requests, the locks, fences and done markers. Under ``maxmemory`` with an evicting
policy (``allkeys-lru`` is a common default of managed Redis) it drops them silently; only ``noeviction``
turns memory pressure into errors podium can retry. Without AOF a restart loses what was queued.

The policy can change while podium runs (``CONFIG SET maxmemory-policy allkeys-lru``): workers and the aggregator
read it again every ``PODIUM_REDIS_POLICY_CHECK_S`` (``EvictionGuard``) and stop taking work while it evicts.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import redis

from podium.coordination import keys
from podium.core.clock import Clock
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


def current_policy(client: redis.Redis) -> str | None:
    """Redis's ``maxmemory-policy`` now, in one round trip: ``CONFIG GET`` (``INFO memory`` where CONFIG is
    refused, as on managed Redis); None when neither answers."""
    try:
        return client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        try:
            return client.info("memory").get("maxmemory_policy")
        except redis.ResponseError:
            return None


class EvictionGuard:
    """Intake of a running process (a worker before each task, the aggregator before each read), stopped while
    Redis evicts keys. The policy is read again at most every ``every_s``; a change to an evicting policy logs
    one error line and stops intake, shown by ``podium status`` (a key per process, kept while stopped); its
    undoing logs one line and resumes. With ``accept`` (PODIUM_ACCEPT_REDIS_EVICTION) a warning, never a stop.
    Redis unreachable: the last answer holds (the caller meets the outage on its own commands)."""

    def __init__(
        self,
        client: redis.Redis,
        who: str,
        accept: bool,
        every_s: float,
        clock: Clock = time.monotonic,
    ):
        self.client, self.who, self.accept, self.every_s, self.clock = client, who, accept, every_s, clock
        self.policy: str | None = None
        self.stopped = False
        self._checked = -1e18
        self._since = ""
        self._key = keys.intake_stopped(re.sub(r"[^A-Za-z0-9_.:\-]", "_", who.strip())[:200] or "unnamed")

    def allows(self) -> bool:
        """True when the process may take work now."""
        now = self.clock()
        if now - self._checked < self.every_s:
            return not self.stopped
        self._checked = now
        try:
            policy = current_policy(self.client)
        except redis.RedisError:
            return not self.stopped
        changed, self.policy = policy != self.policy, policy
        evicts = policy is not None and policy != SAFE_POLICY
        if evicts and self.accept:
            if changed:
                log.warning(
                    "%s: Redis now evicts keys (maxmemory-policy %s); accepted by PODIUM_ACCEPT_REDIS_EVICTION.",
                    self.who,
                    policy,
                )
        elif evicts:
            if not self.stopped:
                self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                log.error(
                    "%s stopped taking work: Redis now evicts keys (maxmemory-policy %s), so queued requests, "
                    "locks and done markers can vanish; set it back with CONFIG SET maxmemory-policy noeviction "
                    "(work resumes within %.0f s), or accept the loss with PODIUM_ACCEPT_REDIS_EVICTION=true.",
                    self.who,
                    policy,
                    self.every_s,
                )
            self.stopped = True
            self._mark(f"maxmemory-policy {policy}")
        elif self.stopped:
            log.warning("%s takes work again: Redis's maxmemory-policy is %s.", self.who, policy)
            self.stopped = False
            self._mark(None)
        return not self.stopped

    def _mark(self, reason: str | None) -> None:
        """Say in Redis that this process stopped (for ``podium status``), or that it resumed."""
        try:
            if reason is None:
                self.client.delete(self._key)
            else:
                self.client.set(self._key, f"{self.who}: {reason} since {self._since}", ex=int(self.every_s * 3) + 1)
        except redis.RedisError as exc:
            log.warning("%s: could not record its intake in Redis (%s).", self.who, exc)
