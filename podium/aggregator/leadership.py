"""Who may publish and acknowledge: the aggregator's leader lock, one :class:`FencedLock` per lead.

The publisher's scripts go through only while the leader key holds ``token``; an aggregator that does not lead
(between leads, or frozen past its lease) has no token, so nothing it publishes or acknowledges goes through.
"""

from __future__ import annotations

from typing import Protocol

import redis

from podium.coordination import keys
from podium.coordination.lock import FencedLock
from podium.errors import LeadershipLost


class Leader(Protocol):
    @property
    def token(self) -> str:
        """The value the leader key must hold for a publish or an acknowledgement to go through."""
        ...


class Leadership:
    """The leader lock over an aggregator's life: ``lead`` takes it, ``step_down`` lets it go."""

    def __init__(self, client: redis.Redis):
        self.client = client
        #: The lock of the current lead (None: not leading).
        self.lock: FencedLock | None = None

    def candidate(self, ttl_ms: int) -> FencedLock:
        """A fresh leader lock, not yet acquired."""
        return FencedLock(self.client, keys.AGGREGATOR_LEADER, keys.AGGREGATOR_FENCE, ttl_ms)

    def lead(self, lock: FencedLock) -> None:
        """``lock`` was acquired: lead under it (its watchdog renews it)."""
        lock.start_watchdog()
        self.lock = lock

    def step_down(self) -> None:
        self.lock = None

    @property
    def token(self) -> str:
        if self.lock is None:
            raise LeadershipLost("this aggregator does not lead: it can neither publish nor acknowledge")
        return self.lock.token
