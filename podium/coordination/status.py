"""What is going on right now, read from Redis: queues, running benchmarks, stale locks, dead letters,
the aggregator's lag, the cores each host's workers hold, and the current best per study."""

from __future__ import annotations

import time
from typing import Any

import redis

from podium.coordination import keys
from podium.coordination.cores import host_usage
from podium.coordination.inflight import in_flight
from podium.coordination.policy import problems, read_policy
from podium.coordination.workers import ready_workers
from podium.core.messages import BestModelUpdate

#: A lock whose benchmark has no heartbeat this fresh is reported stale.
STALE_AFTER_S = 30.0


def collect(client: redis.Redis, dead_letters: int = 5, accept_eviction: bool = False) -> dict[str, Any]:
    now = time.time()
    policy = read_policy(client)
    refusal, warnings = problems(policy, accept_eviction)
    stopped = _intake_stopped(client)
    running = _running(client, now)
    beating = {r["benchmark_key"] for r in running if r["heartbeat_age_s"] < STALE_AFTER_S}
    locks = _locks(client)
    return {
        "queues": _queues(client),
        "running": running,
        "in_flight": in_flight(client, now),
        "locks": len(locks),
        "stale_locks": [lock for lock in locks if lock["benchmark_key"] not in beating],
        "dead_letters": {
            "count": int(client.xlen(keys.DEAD_LETTERS_STREAM)),
            "latest": [
                {"id": i, **{k: v[:300] for k, v in f.items() if k != "payload"}}
                for i, f in client.xrevrange(keys.DEAD_LETTERS_STREAM, count=dead_letters)
            ],
        },
        "aggregator": _aggregator(client),
        "hook_missed": int(client.get(keys.HOOK_MISSED) or 0),
        "cores": host_usage(client),
        "workers": ready_workers(client),
        "best": _best(client),
        "redis": {
            "maxmemory_policy": policy.maxmemory_policy,
            "maxmemory": policy.maxmemory,
            "aof_enabled": policy.aof_enabled,
            "problems": ([refusal] if refusal else []) + warnings + [f"intake stopped: {s}" for s in stopped],
            "intake_stopped": stopped,
        },
        "at": now,
    }


def _intake_stopped(client: redis.Redis) -> list[str]:
    """Workers and aggregators that stopped taking work (Redis evicts), each with why and since when."""
    return sorted(v for v in (client.get(k) for k in client.scan_iter(match=keys.INTAKE_STOPPED_PATTERN)) if v)


def _queues(client: redis.Redis) -> dict[str, int]:
    queues = {}
    for key in client.scan_iter(match=keys.QUEUE_BINDING_PATTERN, count=1000):
        queue = key.removeprefix(keys.QUEUE_BINDING_PREFIX)
        queues[queue] = int(client.llen(queue))
    return dict(sorted(queues.items()))


def _running(client: redis.Redis, now: float) -> list[dict[str, Any]]:
    running = []
    for key in client.scan_iter(match=keys.HEARTBEAT_PATTERN, count=1000):
        beat = client.hgetall(key)
        if beat:
            running.append(
                {
                    "benchmark_key": beat.get("benchmark_key", key.rsplit(":", 1)[-1]),
                    "phase": beat.get("phase", ""),
                    "progress": beat.get("progress", ""),
                    "worker": beat.get("worker", ""),
                    "target": beat.get("target", ""),
                    "heartbeat_age_s": round(now - float(beat.get("updated", now)), 1),
                    "running_s": round(now - float(beat.get("started", now)), 1),
                }
            )
    return sorted(running, key=lambda r: -r["running_s"])


def _locks(client: redis.Redis) -> list[dict[str, Any]]:
    """Benchmark locks (the aggregator's leader lock lives elsewhere)."""
    return [
        {"benchmark_key": key.rsplit(":", 1)[-1], "ttl_ms": int(client.pttl(key))}
        for key in client.scan_iter(match=keys.LOCK_PATTERN, count=1000)
    ]


def _aggregator(client: redis.Redis) -> dict[str, Any] | None:
    if not client.exists(keys.BENCHMARKS_STREAM):
        return None
    for g in client.xinfo_groups(keys.BENCHMARKS_STREAM):
        if g["name"] == keys.AGGREGATOR_GROUP:
            return {
                "pending": g["pending"],
                "lag": g.get("lag"),
                "consumers": g["consumers"],
                "leader": client.exists(keys.AGGREGATOR_LEADER) == 1,
            }
    return None


def _best(client: redis.Redis) -> list[dict[str, Any]]:
    best = []
    for key in client.scan_iter(match=keys.BEST_LATEST_PATTERN, count=1000):
        raw = client.get(key)
        if raw:
            best.append(BestModelUpdate.model_validate_json(raw).model_dump(mode="json"))
    return sorted(best, key=lambda b: (b["study_key_hash"], b["benchmark_config_hash"] or ""))
