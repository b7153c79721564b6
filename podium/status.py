"""What is going on right now, read from Redis: queues, running benchmarks, stale locks, dead letters,
the aggregator's lag, and the current best per study."""

from __future__ import annotations

import time
from typing import Any

import redis

from podium import names
from podium.core.messages import BestModelUpdate

#: A lock whose benchmark has no heartbeat this fresh is reported stale.
STALE_AFTER_S = 30.0


def collect(client: redis.Redis, dead_letters: int = 5) -> dict[str, Any]:
    now = time.time()
    queues = {}
    for key in client.scan_iter(match="_kombu.binding.podium.*", count=1000):
        queue = key.removeprefix("_kombu.binding.")
        queues[queue] = int(client.llen(queue))
    running = []
    for key in client.scan_iter(match="podium:heartbeat:*", count=1000):
        beat = client.hgetall(key)
        if not beat:
            continue
        running.append({
            "benchmark_key": beat.get("benchmark_key", key.rsplit(":", 1)[-1]),
            "phase": beat.get("phase", ""), "progress": beat.get("progress", ""), "worker": beat.get("worker", ""),
            "target": beat.get("target", ""), "heartbeat_age_s": round(now - float(beat.get("updated", now)), 1),
            "running_s": round(now - float(beat.get("started", now)), 1),
        })
    beating = {r["benchmark_key"] for r in running if r["heartbeat_age_s"] < STALE_AFTER_S}
    locks, stale = [], []
    for key in client.scan_iter(match="podium:lock:*", count=1000):
        bkey = key.removeprefix("podium:lock:")
        entry = {"benchmark_key": bkey, "ttl_ms": int(client.pttl(key))}
        locks.append(entry)
        if bkey not in beating and bkey != "aggregator-leader":
            stale.append(entry)
    letters = [{"id": i, **{k: v[:300] for k, v in f.items() if k != "payload"}}
               for i, f in client.xrevrange(names.DEAD_LETTERS_STREAM, count=dead_letters)]
    best = []
    for key in client.scan_iter(match=names.BEST_LATEST_PATTERN, count=1000):
        raw = client.get(key)
        if raw:
            u = BestModelUpdate.model_validate_json(raw)
            best.append(u.model_dump(mode="json"))
    aggregator = None
    if client.exists(names.BENCHMARKS_STREAM):
        for g in client.xinfo_groups(names.BENCHMARKS_STREAM):
            if g["name"] == names.AGGREGATOR_GROUP:
                aggregator = {"pending": g["pending"], "lag": g.get("lag"), "consumers": g["consumers"],
                              "leader": client.exists(names.lock("aggregator-leader")) == 1}
    return {
        "queues": dict(sorted(queues.items())),
        "running": sorted(running, key=lambda r: -r["running_s"]),
        "locks": len(locks),
        "stale_locks": stale,
        "dead_letters": {"count": int(client.xlen(names.DEAD_LETTERS_STREAM)), "latest": letters},
        "aggregator": aggregator,
        "best": sorted(best, key=lambda b: (b["study_key_hash"], b["benchmark_config_hash"] or "")),
        "at": now,
    }
