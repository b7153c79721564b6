"""Which sent requests a queue lost (``podium backfill --sent``): the pure rule."""

from __future__ import annotations

from podium.core.lost import Sent, lost_requests

NOW = 1_800_000_000_000


def sent(task: str, age_ms: int, key: str | None = None) -> Sent:
    return Sent(f"{NOW - age_ms}-0", task, key or task * 4, "podium.cpu", "{}")


def lost(entries: list[Sent], **held: set[str]) -> list[str]:
    sets = {"answered": set(), "done_keys": set(), "waiting": set()} | held
    return [s.task_id for s in lost_requests(entries, now_ms=NOW, min_age_ms=60_000, max_age_ms=86_400_000, **sets)]


def test_a_request_nothing_accounts_for_is_lost() -> None:
    assert lost([sent("a", 120_000)]) == ["a"]


def test_answered_done_queued_or_in_flight_requests_are_not() -> None:
    entries = [sent(t, 120_000) for t in "abcd"]
    assert lost(entries, answered={"a"}, done_keys={"bbbb"}, waiting={"c"}) == ["d"]


def test_too_recent_or_too_old_to_judge() -> None:
    assert lost([sent("a", 30_000), sent("b", 90_000_000), sent("c", 60_000)]) == ["c"]
