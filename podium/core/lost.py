"""Which sent requests a queue lost: a pure rule over what the producers' sent log says and what Redis holds.

A request is lost when it was sent at least ``min_age_ms`` ago and within the task results' expiry, and it is
neither answered (a task result or a done marker for its key), nor waiting in its queue, nor held unacknowledged
by a worker. Re-sending such a request is safe even when the rule is wrong (a request in transit between the
queue and a worker's unacknowledged set): the benchmark key's lock and existence check make a second send
``reused``, never a second measurement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sent:
    entry_id: str  # the sent log's stream id ("<ms>-<n>")
    task_id: str
    benchmark_key: str
    queue: str
    request: str  # the request as sent (JSON)

    @property
    def sent_ms(self) -> int:
        return int(self.entry_id.split("-")[0])


def lost_requests(
    sent: Iterable[Sent],
    *,
    answered: set[str],
    done_keys: set[str],
    waiting: set[str],
    now_ms: int,
    min_age_ms: int,
    max_age_ms: int,
) -> list[Sent]:
    """The sent requests nothing in Redis accounts for (``answered`` and ``waiting`` hold task ids: results, and
    messages queued or unacknowledged; ``done_keys`` the benchmark keys with a done marker)."""
    return [
        s
        for s in sent
        if min_age_ms <= now_ms - s.sent_ms <= max_age_ms
        and s.task_id not in answered
        and s.task_id not in waiting
        and s.benchmark_key not in done_keys
    ]
