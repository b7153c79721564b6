"""Follow the best model of one study (or all): the latest value first, then every update, in order,
without gaps or duplicates across reconnects.

Pub/Sub is at-most-once and redis-py re-subscribes silently after a reconnect, so the iterator
(re)subscribes itself, then catches up from the durable history stream ``podium:best-updates`` from
where it last was, and drops every update whose per-study sequence number it has already yielded.

A lower sequence number than the last one yielded is either a late copy (dropped) or a sign that Redis lost its
data and an aggregator restarted the study's counter (an older podium restarted it at 1): the study's latest
value (the snapshot) tells which. When the snapshot is below what was yielded, the follower logs one line and
re-syncs: the study's sequence starts again from that update and the snapshot.

    for update in podium.subscribe(study_key_hash="..."):
        print(update.seq, update.reason, update.best.trial_key_hash, update.best.latency_ms)
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator

import redis

from podium.coordination import keys
from podium.coordination.connection import connect
from podium.core.messages import BestModelUpdate, decode
from podium.core.prefixes import resolve
from podium.core.safety import require_safe
from podium.errors import MessageError

log = logging.getLogger(__name__)

#: Delay between reconnect attempts (doubling up to the maximum).
RECONNECT_S = (0.2, 5.0)
#: Entries of ``podium:best-updates`` per read while catching up.
PAGE = 1000


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
    follower = Follower(client, study_key_hash)
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


class Follower:
    """One follower of the channel (``study`` None: every study) by the rules above, across reconnects: each
    :meth:`follow` subscribes, catches up from where the last one stopped, then yields what is published.

    ``history``: the first catch-up also yields the newest ``history`` entries of the durable stream (0: only
    each scope's latest value, as ``podium.subscribe``)."""

    def __init__(self, client: redis.Redis, study: str | None, history: int = 0):
        self.client = client
        self.study = study
        self.history = history
        self.seen: dict[str, int] = {}
        self.history_id: str | None = None  # where the catch-up read stopped

    def _fresh(self, update: BestModelUpdate) -> list[BestModelUpdate]:
        """What to yield for ``update``: itself when new; nothing for a copy; after a reset, itself and the
        snapshot's newer values."""
        study = update.study_key_hash
        if self.study is not None and study != self.study:
            return []
        last = self.seen.get(study, 0)
        if update.seq > last:
            self.seen[study] = update.seq
            return [update]
        if update.seq == last:
            return []
        snapshot = self._latest_values(study)
        if any(u.seq >= last for u in snapshot):
            return []  # a late copy: Redis still holds what was yielded
        log.warning(
            "Study %s's sequence went back from %d to %d and its latest value is below %d too: Redis lost its "
            "data; re-syncing from the latest value.",
            study[:12],
            last,
            update.seq,
            last,
        )
        self.seen[study] = update.seq
        newer = sorted((u for u in snapshot if u.seq > update.seq), key=lambda u: u.seq)
        if newer:
            self.seen[study] = newer[-1].seq
        return [update, *newer]

    def follow(
        self, stop: threading.Event, poll_s: float, caught_up: Callable[[], None] | None = None
    ) -> Generator[BestModelUpdate, None, None]:
        """Until ``stop``; ``caught_up`` is called once what the catch-up read was yielded, before what is live."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            if self.study is None:
                pubsub.psubscribe(keys.BEST_CHANNEL_PATTERN)
            else:
                pubsub.subscribe(keys.best_channel(self.study))
            # Subscribed first, then caught up: nothing published in between can be missed.
            yield from (f for u in self._catch_up() for f in self._fresh(u))
            if caught_up is not None:
                caught_up()
            while not stop.is_set():
                message = pubsub.get_message(timeout=poll_s)
                if message is None or message.get("type") not in ("message", "pmessage"):
                    continue
                try:
                    update = decode(BestModelUpdate, message["data"])
                except MessageError as exc:
                    log.warning("Ignored a malformed update on %s: %s", message.get("channel"), exc)
                    continue
                yield from self._fresh(update)
        finally:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()

    def _catch_up(self) -> list[BestModelUpdate]:
        if self.history_id is None:
            newest = self.client.xrevrange(keys.BEST_UPDATES_STREAM, count=max(self.history, 1))
            updates = _parsed(reversed(newest[: self.history])) + self._latest_values()
            self.history_id = newest[0][0] if newest else "0-0"
        else:
            updates = []
            while entries := self.client.xrange(keys.BEST_UPDATES_STREAM, min=f"({self.history_id}", count=PAGE):
                updates += _parsed(entries)
                self.history_id = entries[-1][0]
        return sorted(updates, key=lambda u: (u.study_key_hash, u.seq))

    def _latest_values(self, study: str | None = None) -> list[BestModelUpdate]:
        study = study or self.study
        pattern = keys.BEST_LATEST_PATTERN if study is None else f"{keys.best_channel(study)}:*"
        names = list(self.client.scan_iter(match=pattern, count=1000))
        values = self.client.mget(names) if names else []
        return [u for u in (parse_update(v) for v in values) if u is not None]


def published_studies(client: redis.Redis) -> set[str]:
    """Studies that have a published best (a latest-value key)."""
    return {keys.study_of_best(k) for k in client.scan_iter(match=keys.BEST_LATEST_PATTERN, count=1000)}


def _parsed(entries: Iterable[tuple[str, dict[str, str]]]) -> list[BestModelUpdate]:
    """The valid updates of ``podium:best-updates`` entries, in their order."""
    return [u for u in (parse_update(f.get("data")) for _, f in entries) if u is not None]


def parse_update(raw: str | None) -> BestModelUpdate | None:
    """A published update read back from Redis; None for nothing, or for what is not a valid update."""
    if not raw:
        return None
    try:
        return decode(BestModelUpdate, raw)
    except MessageError:
        return None
