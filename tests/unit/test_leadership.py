"""The aggregator's leadership: a publisher writes and acknowledges only under the token of a lead it holds."""

from __future__ import annotations

import fakeredis
import pytest

from podium.aggregator.leadership import Leadership
from podium.aggregator.publisher import Publisher
from podium.coordination import keys
from podium.core.decision import Channel, update_of
from podium.errors import LeadershipLost

STUDY = "5" * 64
FIRST = update_of("first", None, Channel(STUDY, "c" * 64, "weighted", "median"))


def published(r: fakeredis.FakeRedis) -> int:
    return r.xlen(keys.BEST_UPDATES_STREAM)


def test_an_aggregator_that_does_not_lead_publishes_nothing() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    leadership = Leadership(r)
    publisher = Publisher(r, leadership)
    with pytest.raises(LeadershipLost, match="does not lead"):
        publisher.publish(FIRST)
    with pytest.raises(LeadershipLost, match="does not lead"):
        publisher.ack(["1-0"])
    assert published(r) == 0 and r.get(keys.sequence(STUDY)) is None


def test_a_lead_publishes_until_another_takes_the_leader_key() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    leadership = Leadership(r)
    publisher = Publisher(r, leadership)
    lock = leadership.candidate(ttl_ms=60_000)
    assert lock.acquire() == 1
    leadership.lead(lock)
    try:
        assert publisher.publish(FIRST).seq == 1 and published(r) == 1
        r.set(keys.AGGREGATOR_LEADER, "another-aggregator")  # its lease ran out while it was frozen
        with pytest.raises(LeadershipLost, match="no longer the leader"):
            publisher.publish(FIRST)
        assert published(r) == 1
    finally:
        leadership.step_down()
        lock.release()
    with pytest.raises(LeadershipLost, match="does not lead"):
        publisher.publish(FIRST)
