"""What is happening per study, read from Redis (read only): benchmarks delivered to a worker and not yet
acknowledged, and dead letters that name the study."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable

import redis

from podium.coordination import keys

#: Newest dead letters looked at when counting them per study.
DEAD_LETTERS_READ = 2000


def in_flight_by_study(client: redis.Redis) -> Counter[str]:
    """Benchmark requests a worker holds now (kombu's unacknowledged messages), counted by study."""
    out: Counter[str] = Counter()
    for raw in client.hvals(keys.UNACKED):
        study = _study_of_message(raw)
        if study:
            out[study] += 1
    return out


def dead_letters_by_study(client: redis.Redis, studies: Iterable[str]) -> Counter[str]:
    """Dead letters (of the newest ``DEAD_LETTERS_READ``) whose payload names each study."""
    wanted = list(studies)
    out: Counter[str] = Counter()
    if not wanted:
        return out
    for _, fields in client.xrevrange(keys.DEAD_LETTERS_STREAM, count=DEAD_LETTERS_READ):
        payload = fields.get("payload", "")
        for study in wanted:
            if study in payload:
                out[study] += 1
    return out


def _study_of_message(raw: str) -> str | None:
    """The ``study_key_hash`` of a benchmark task message as kombu keeps it, or None."""
    try:
        payload = json.loads(raw)[0]
        body = payload.get("body", "")
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8", "replace")
        args = json.loads(body)[0]
        request = args[0] if args and isinstance(args[0], dict) else {}
        study = request.get("study_key_hash")
        return study if isinstance(study, str) else None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        return None
