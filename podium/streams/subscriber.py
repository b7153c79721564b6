"""Follow the best model of one study (or all): the latest value first, then every update, in order,
without gaps or duplicates across reconnects.

Pub/Sub is at-most-once and redis-py re-subscribes silently after a reconnect, so the iterator
(re)subscribes itself, then catches up from the durable history stream ``podium:best-updates`` from
where it last was, and drops every update whose per-study sequence number it has already yielded.

    for update in podium.subscribe(study_key_hash="..."):
        print(update.seq, update.reason, update.best.trial_key_hash, update.best.latency_ms)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import redis

from podium.core.messages import BestModelUpdate, MessageError, decode
from podium.core.prefixes import resolve
from podium.core.safety import require_safe
from podium.streams import keys
from podium.streams.connection import connect

log = logging.getLogger(__name__)

#: Delay between reconnect attempts (doubling up to the maximum).
RECONNECT_S = (0.2, 5.0)


def subscribe(
    redis_url: str | None = None,
    study_key_hash: str | None = None,
    *,
    client: redis.Redis | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
) -> Iterator[BestModelUpdate]:
    if study_key_hash is not None:
        require_safe(study_key_hash, "study_key_hash")
    if client is None:
        from podium.settings.env import PodiumSettings

        client = connect(redis_url or PodiumSettings().redis_url)
    if study_key_hash is not None:  # a short hash: the one study with a published best that it starts
        study_key_hash = resolve(study_key_hash, published_studies(client), "study")
    follower = _Follower(client, study_key_hash)
    stop = stop or threading.Event()
    delay = RECONNECT_S[0]
    while not stop.is_set():
        try:
            yield from follower.follow(stop, poll_s)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Lost the connection to Redis (%s); reconnecting in %.1f s.", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, RECONNECT_S[1])
            continue
        delay = RECONNECT_S[0]


class _Follower:
    def __init__(self, client: redis.Redis, study: str | None):
        self.client = client
        self.study = study
        self.seen: dict[str, int] = {}
        self.history_id: str | None = None  # where the catch-up read stopped

    def _fresh(self, update: BestModelUpdate) -> bool:
        if self.study is not None and update.study_key_hash != self.study:
            return False
        if update.seq <= self.seen.get(update.study_key_hash, 0):
            return False
        self.seen[update.study_key_hash] = update.seq
        return True

    def follow(self, stop: threading.Event, poll_s: float) -> Iterator[BestModelUpdate]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            if self.study is None:
                pubsub.psubscribe(keys.BEST_CHANNEL_PATTERN)
            else:
                pubsub.subscribe(keys.best_channel(self.study))
            # Subscribed first, then caught up: nothing published in between can be missed.
            yield from (u for u in self._catch_up() if self._fresh(u))
            while not stop.is_set():
                message = pubsub.get_message(timeout=poll_s)
                if message is None or message.get("type") not in ("message", "pmessage"):
                    continue
                try:
                    update = decode(BestModelUpdate, message["data"])
                except MessageError as exc:
                    log.warning("Ignored a malformed update on %s: %s", message.get("channel"), exc)
                    continue
                if self._fresh(update):
                    yield update
        finally:
            pubsub.close()

    def _catch_up(self) -> list[BestModelUpdate]:
        tip = self.client.xrevrange(keys.BEST_UPDATES_STREAM, count=1)
        if self.history_id is None:
            updates = self._latest_values()
        else:
            entries = self.client.xrange(keys.BEST_UPDATES_STREAM, min=f"({self.history_id}")
            updates = [u for u in (_parse(f.get("data")) for _, f in entries) if u is not None]
        if tip:
            self.history_id = tip[0][0]
        elif self.history_id is None:
            self.history_id = "0-0"
        return sorted(updates, key=lambda u: (u.study_key_hash, u.seq))

    def _latest_values(self) -> list[BestModelUpdate]:
        pattern = keys.BEST_LATEST_PATTERN if self.study is None else f"{keys.best_channel(self.study)}:*"
        names = list(self.client.scan_iter(match=pattern, count=1000))
        values = self.client.mget(names) if names else []
        return [u for u in (_parse(v) for v in values) if u is not None]


def published_studies(client: redis.Redis) -> set[str]:
    """Studies that have a published best (a latest-value key)."""
    return {keys.study_of_best(k) for k in client.scan_iter(match=keys.BEST_LATEST_PATTERN, count=1000)}


def _parse(raw: str | None) -> BestModelUpdate | None:
    if not raw:
        return None
    try:
        return decode(BestModelUpdate, raw)
    except MessageError:
        return None
