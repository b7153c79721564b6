"""The board's one Redis subscription, shared by every open page.

It follows ``podium:best:*`` with ``podium.subscribe``'s follower (subscribe first, then catch up from the durable
stream ``podium:best-updates`` from where it last was, drop every update whose per-study sequence number it has
already taken; at start it also reads the stream's newest entries), and keeps each study's recent history in
memory. A page that connects, or reconnects with the last sequence number it saw, gets the updates it missed from
that history and then the live ones, in order, under one lock: none missed, none twice. Listeners are asyncio
queues fed from this thread; the feed reads Redis and never writes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from podium.coordination.subscriber import Follower
from podium.core.messages import BestModelUpdate

log = logging.getLogger(__name__)

#: Updates kept per study for pages that reconnect (and the study page's history).
HISTORY_PER_STUDY = 500
#: Entries of ``podium:best-updates`` read at start (newest first); the latest value of every scope is read too.
START_ENTRIES = 20_000
#: Delay between reconnect attempts (doubling up to the maximum), as ``podium.subscribe``.
RECONNECT_S = (0.2, 5.0)
#: How long one wait for a Pub/Sub message lasts before the stop flag is looked at again.
POLL_S = 0.5

LIVE, CONNECTING, RECONNECTING = "live", "connecting", "reconnecting"


@dataclass(eq=False)
class Listener:
    """One open page: the study it follows (None: all) and the queue its events reach it by."""

    loop: asyncio.AbstractEventLoop
    study: str | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def deliver(self, event: tuple[str, Any]) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
            return True
        except RuntimeError:  # its loop is closed: the page is gone
            return False


class Feed:
    """Follows every study's best-model updates on one Redis connection and fans them out to listeners.

    ``on_update(study)`` is called (on the feed's thread, outside its lock) after each new update."""

    def __init__(self, client: redis.Redis, on_update: Callable[[str], None] | None = None):
        self.client = client
        self.on_update = on_update
        self.state = CONNECTING
        self._lock = threading.Lock()
        self._history: dict[str, deque[BestModelUpdate]] = {}
        self._latest: dict[tuple[str, str | None], BestModelUpdate] = {}
        self._seen: dict[str, int] = {}
        self._listeners: set[Listener] = set()
        self._follower = Follower(client, None, history=START_ENTRIES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.caught_up = threading.Event()

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="podium-board-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = RECONNECT_S[0]
        while not self._stop.is_set():
            try:
                self._follow()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._set_state(RECONNECTING)
                log.warning("Lost the connection to Redis (%s); reconnecting in %.1f s.", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_S[1])
                continue
            except Exception:  # a bug must not end the board's only subscription silently
                log.exception("The board's Redis follower failed; starting it again.")
                self._set_state(RECONNECTING)
                self._stop.wait(delay)
                continue
            delay = RECONNECT_S[0]

    def _follow(self) -> None:
        with contextlib.closing(self._follower.follow(self._stop, POLL_S, caught_up=self._live)) as updates:
            for update in updates:
                self._take(update)

    def _live(self) -> None:
        self.caught_up.set()
        self._set_state(LIVE)

    def _take(self, update: BestModelUpdate) -> None:
        """Keep ``update`` and send it to its listeners, unless its study already had this seq or a later one."""
        study = update.study_key_hash
        with self._lock:
            if update.seq <= self._seen.get(study, 0):
                return
            self._seen[study] = update.seq
            self._history.setdefault(study, deque(maxlen=HISTORY_PER_STUDY)).append(update)
            self._latest[(study, update.benchmark_config_hash)] = update
            self._send(("update", update), study)
        if self.on_update is not None:
            self.on_update(study)

    def _set_state(self, state: str) -> None:
        with self._lock:
            if self.state == state:
                return
            self.state = state
            self._send(("status", state), None)

    def _send(self, event: tuple[str, Any], study: str | None) -> None:
        """To every listener of ``study`` (None: to all); with the lock held."""
        gone = [
            listener
            for listener in self._listeners
            if (study is None or listener.study in (None, study)) and not listener.deliver(event)
        ]
        self._listeners.difference_update(gone)

    # ------------------------------------------------------------------ listeners and reads

    def listen(
        self, loop: asyncio.AbstractEventLoop, study: str | None, after: int | None
    ) -> tuple[Listener, list[BestModelUpdate], bool]:
        """A new listener, the updates of ``study`` after seq ``after`` it missed, and whether some it missed are
        no longer kept (the page must reload). Taken under the lock: nothing between the two, nothing twice."""
        listener = Listener(loop, study)
        with self._lock:
            backlog: list[BestModelUpdate] = []
            lost = False
            if study is not None and after is not None:
                kept = self._history.get(study) or deque()
                backlog = [u for u in kept if u.seq > after]
                lost = bool(kept) and kept[0].seq > after + 1 and len(kept) == HISTORY_PER_STUDY
            self._listeners.add(listener)
        return listener, backlog, lost

    def unlisten(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def broadcast(self, event: tuple[str, Any], study: str | None = None) -> None:
        """Send an event of the board's own (a refreshed selection) to the listeners of ``study`` (None: all)."""
        with self._lock:
            self._send(event, study)

    def studies(self) -> set[str]:
        with self._lock:
            return set(self._seen)

    def latest(self, study: str) -> list[BestModelUpdate]:
        """The current update of each of the study's scopes."""
        with self._lock:
            return [u for (s, _), u in self._latest.items() if s == study]

    def history(self, study: str) -> list[BestModelUpdate]:
        """The study's kept updates, oldest first."""
        with self._lock:
            return list(self._history.get(study, ()))

    def seq(self, study: str) -> int:
        with self._lock:
            return self._seen.get(study, 0)

    def seqs(self) -> dict[str, int]:
        """Every study's last seq taken."""
        with self._lock:
            return dict(self._seen)

    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)
