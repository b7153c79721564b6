"""Core claims per host in Redis: the workers of one host hold cores of their own, never the same one.

One hash per host (``podium:cores:{host}``): field ``<core>`` -> ``<owner>|<deadline ms>`` for each claimed
core, ``contended:<owner>`` -> ``<owner>|<deadline ms>`` for a measurement running on shared cores, and
``usable`` -> the host's cores. A claim lives until its deadline (Redis's clock), renewed by its holder's
watchdog; a killed worker's cores come back when it passes. Claim, renew and release are each one script,
so two workers starting at once cannot take the same core.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from podium.coordination import keys
from podium.core.cores import format_core_list, parse_core_list

log = logging.getLogger(__name__)

#: A claim not renewed for this long is free again (its worker died); renewed every third of it. Workers use
#: their lock TTL (``PODIUM_LOCK_TTL_MS``) instead.
DEFAULT_CLAIM_TTL_MS = 30_000
#: A host's hash (its ``usable`` field) is forgotten this long after its last claim.
HOST_TTL_S = 24 * 3600
#: Field prefix of a measurement running on shared cores.
CONTENDED_PREFIX = "contended:"

# KEYS: the host's hash. ARGV: owner, cores needed, ttl ms, usable cores ("0,1,2"), hash ttl s, shared
# ("1": take what is free and run contended; "0": all or nothing).
# Returns {status, cores...}: status 1 = the cores are this owner's alone, 2 = contended (it shares cores
# with others; the cores listed are still its own), 0 = not enough free (nothing taken).
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner, n, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function live(v)
  if not v then return false end
  local sep = string.find(v, '|', 1, true)
  return tonumber(string.sub(v, sep + 1)) > now and string.sub(v, 1, sep - 1) ~= owner
end
local free = {}
for core in string.gmatch(ARGV[4], '[^,]+') do
  if not live(redis.call('HGET', KEYS[1], core)) then table.insert(free, core) end
end
local contenders = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 10) == 'contended:' and live(all[i + 1]) then contenders = contenders + 1 end
end
redis.call('HSET', KEYS[1], 'usable', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local status = 1
if #free < n or contenders > 0 then
  if ARGV[6] ~= '1' then return {0} end
  status = 2
  redis.call('HSET', KEYS[1], 'contended:' .. owner, owner .. '|' .. (now + ttl))
end
local out = {status}
for i = 1, math.min(n, #free) do
  redis.call('HSET', KEYS[1], free[i], owner .. '|' .. (now + ttl))
  table.insert(out, tonumber(free[i]))
end
return out
"""
# KEYS: the host's hash. ARGV: owner, ttl ms. Returns how many fields this owner still held (now renewed).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewed = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  if sep and string.sub(v, 1, sep - 1) == ARGV[1] then
    redis.call('HSET', KEYS[1], all[i], ARGV[1] .. '|' .. (now + tonumber(ARGV[2])))
    renewed = renewed + 1
  end
end
return renewed
"""
# KEYS: the host's hash. ARGV: owner. Deletes this owner's fields; returns how many.
_RELEASE = """
local gone = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  if sep and string.sub(v, 1, sep - 1) == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
    gone = gone + 1
  end
end
return gone
"""


@dataclass(frozen=True)
class Claim:
    """Cores taken by one owner: ``contended`` when it runs on cores that others use too."""

    owner: str
    cores: tuple[int, ...]
    contended: bool


class CoreClaims:
    """The core claims of one host, for one worker process."""

    def __init__(self, client: redis.Redis, host: str, worker: str, ttl_ms: int = DEFAULT_CLAIM_TTL_MS):
        self.client = client
        self.key = keys.cores(host)
        self.host = host
        self.worker = worker.replace("|", "/")
        self.ttl_ms = ttl_ms
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def claim(self, needed: int, usable: Sequence[int], shared: bool = False) -> Claim | None:
        """``needed`` of ``usable`` cores no other worker holds, or None when there are not enough (nothing is
        taken then). ``shared``: take what is free and run contended instead of returning None."""
        owner = f"{self.worker}#{secrets.token_hex(4)}"
        got = self._claim(
            keys=[self.key],
            args=[owner, needed, self.ttl_ms, ",".join(map(str, usable)), HOST_TTL_S, "1" if shared else "0"],
        )
        status = int(got[0])
        if status == 0:
            return None
        return Claim(owner, tuple(int(c) for c in got[1:]), contended=status == 2)

    def announce(self, usable: Sequence[int]) -> None:
        """Say which cores this host has (for ``podium status``), before any claim."""
        pipe = self.client.pipeline()
        pipe.hset(self.key, "usable", ",".join(map(str, usable)))
        pipe.expire(self.key, HOST_TTL_S)
        pipe.execute()

    def renew(self, claim: Claim) -> bool:
        """Push the claim's deadline on; False when it had lapsed (another worker may hold its cores now)."""
        return int(self._renew(keys=[self.key], args=[claim.owner, self.ttl_ms])) > 0

    def release(self, claim: Claim) -> None:
        self._release(keys=[self.key], args=[claim.owner])

    def watchdog(self, claim: Claim) -> ClaimWatchdog:
        return ClaimWatchdog(self, claim)


class ClaimWatchdog:
    """Renews a claim every third of its TTL on a daemon thread until stopped; logs when it lapsed."""

    def __init__(self, claims: CoreClaims, claim: Claim):
        self.claims, self.claim = claims, claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podium-cores", daemon=True)
        self.lapsed = False

    def start(self) -> ClaimWatchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.claims.ttl_ms / 3000):
            try:
                if not self.claims.renew(self.claim):
                    self.lapsed = True
                    log.warning("The claim on cores %s lapsed; another worker may use them now.", self.claim.cores)
            except redis.RedisError as exc:
                log.warning("Could not renew the claim on cores %s (%s); trying again.", self.claim.cores, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def host_usage(client: redis.Redis, now_ms: float | None = None) -> list[dict[str, Any]]:
    """Per host: its usable cores, the live claims (core, worker, seconds left) and contended measurements."""
    if now_ms is None:
        seconds, micros = client.time()  # the clock the deadlines were written with
        now_ms = seconds * 1000 + micros / 1000
    now = now_ms
    hosts = []
    for key in client.scan_iter(match=keys.CORES_PATTERN, count=1000):
        fields = client.hgetall(key)
        usable = parse_core_list(fields.pop("usable", ""))
        claimed, contended = [], []
        for field, value in fields.items():
            owner, _, deadline = value.rpartition("|")
            if not deadline.lstrip("-").isdigit() or int(deadline) <= now:
                continue
            worker = owner.rpartition("#")[0] or owner
            if field.startswith(CONTENDED_PREFIX):
                contended.append(worker)
            elif field.isdigit():
                left_s = round((int(deadline) - now) / 1000, 1)
                claimed.append({"core": int(field), "worker": worker, "expires_s": left_s})
        hosts.append(
            {
                "host": key.split(":", 2)[2],
                "usable": format_core_list(usable),
                "usable_count": len(usable),
                "claimed": sorted(claimed, key=lambda c: c["core"]),
                "contended": sorted(contended),
            }
        )
    return sorted(hosts, key=lambda h: h["host"])
