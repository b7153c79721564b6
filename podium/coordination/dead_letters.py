"""The dead-letter stream: what could not be processed, with the error, never silently dropped."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from podium.coordination import keys

log = logging.getLogger(__name__)

#: Dead letters kept (approximate trim).
MAXLEN = 10_000
#: Payload characters kept in a dead letter.
MAX_PAYLOAD_CHARS = 16_384


def dead_letter(client: redis.Redis, source: str, payload: Any, error: str) -> str | None:
    """Park ``payload`` with ``error``; returns the entry id (None if Redis itself is unreachable)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, default=repr)
    fields = {"source": source, "error": error[:4000], "payload": text[:MAX_PAYLOAD_CHARS], "at": f"{time.time():.3f}"}
    try:
        entry = client.xadd(keys.DEAD_LETTERS_STREAM, fields, maxlen=MAXLEN, approximate=True)
    except redis.RedisError as exc:
        log.error("Could not dead-letter a %s message (%s); error was: %s", source, exc, error)
        return None
    log.warning("Dead-lettered a %s message as %s: %s", source, entry, error)
    return str(entry)
