"""Unacknowledged messages, for ``podium status``: kombu's ``unacked`` hash and delivery times, with who holds
each one (``podium:inflight``, written by the workers' main processes, see :mod:`podium.workers.reaper`)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any

import redis

from podium.coordination import keys


def in_flight(client: redis.Redis, now: float | None = None) -> list[dict[str, Any]]:
    """Every unacknowledged message: its task and request, how long ago it was delivered, who holds it and
    whether that holder is alive (for ``podium status``)."""
    now = time.time() if now is None else now
    holders = client.hgetall(keys.INFLIGHT)
    out = []
    for tag, raw in client.hgetall(keys.UNACKED).items():
        delivered = client.zscore(keys.UNACKED_INDEX, tag)
        entry: dict[str, Any] = {"delivery_tag": tag, "age_s": round(now - delivered, 1) if delivered else None}
        try:
            payload, _, routing_key = json.loads(raw)
            entry["queue"] = routing_key
            entry["task_id"] = payload.get("headers", {}).get("id")
            entry.update(_request_fields(payload))
        except (ValueError, TypeError, AttributeError):
            pass
        holder = holders.get(tag)
        if holder:
            with contextlib.suppress(ValueError, TypeError):
                node = json.loads(holder).get("node")
                entry["worker"] = node
                entry["worker_alive"] = bool(node and client.exists(keys.node(node)))
        out.append(entry)
    return sorted(out, key=lambda e: -(e["age_s"] or 0))


def _request_fields(payload: dict[str, Any]) -> dict[str, str]:
    """request_id and benchmark_key of a benchmark task message, when its body says."""
    body = payload.get("body", "")
    if payload.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode("utf-8", "replace")
    args = json.loads(body)[0]
    request = args[0] if args and isinstance(args[0], dict) else {}
    return {k: str(request[k]) for k in ("request_id", "benchmark_key") if k in request}
