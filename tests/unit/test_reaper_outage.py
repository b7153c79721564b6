"""The reaper's rules (requeue only what a dead holder left, never twice), and what counts as an outage."""

from __future__ import annotations

import errno
import json

import fakeredis
import pytest
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import OperationalError

from podium.coordination import keys
from podium.coordination.inflight import in_flight
from podium.errors import TrackingError
from podium.workers import reaper
from podium.workers.outage import OutageBudget, outage_of

QUEUE = "podium.cpu"


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis(decode_responses=True)
    client.sadd(f"{keys.QUEUE_BINDING_PREFIX}{QUEUE}", f"{QUEUE}\x06\x16\x06\x16{QUEUE}")
    return client


def delivered(r: fakeredis.FakeRedis, tag: str, node: str, at: float = 100.0) -> None:
    """A message delivered to ``node`` as kombu records it, and the holder record podium adds."""
    payload = {
        "body": "W1t7InJlcXVlc3RfaWQiOiAicjEiLCAiYmVuY2htYXJrX2tleSI6ICJrIn1dLCB7fSwge31d",
        "headers": {"id": f"task-{tag}"},
        "properties": {"delivery_tag": tag, "body_encoding": "base64", "delivery_info": {"exchange": QUEUE}},
    }
    r.hset(keys.UNACKED, tag, json.dumps([payload, QUEUE, QUEUE]))
    r.zadd(keys.UNACKED_INDEX, {tag: at})
    reaper.record(r, tag, node, f"task-{tag}")


def test_a_dead_holders_message_goes_back_to_the_front_of_its_queue_once(r: fakeredis.FakeRedis) -> None:
    r.set(keys.node("alive"), "1")
    delivered(r, "t-alive", "alive")
    delivered(r, "t-dead", "dead")
    r.lpush(QUEUE, "older")
    assert reaper.reap(r) == 1
    assert reaper.reap(r) == 0  # a second reaper (or round) finds nothing left to move
    assert r.hkeys(keys.UNACKED) == ["t-alive"] and r.hkeys(keys.INFLIGHT) == ["t-alive"]
    assert r.zrange(keys.UNACKED_INDEX, 0, -1) == ["t-alive"]
    back = json.loads(r.rpop(QUEUE))  # the consumer pops from the right: the requeued message comes first
    assert back["properties"]["delivery_tag"] == "t-dead" and back["headers"]["redelivered"] is True
    assert r.lrange(QUEUE, 0, -1) == ["older"]


def test_a_message_taken_over_meanwhile_is_not_moved(r: fakeredis.FakeRedis) -> None:
    delivered(r, "t1", "dead")
    seen = r.hget(keys.INFLIGHT, "t1")
    reaper.record(r, "t1", "new-holder", "task-t1")  # redelivered to a live worker, same tag
    r.set(keys.node("new-holder"), "1")
    assert not reaper.requeue(r, "t1", {"node": "dead"}, seen)
    assert r.llen(QUEUE) == 0 and r.hexists(keys.UNACKED, "t1")


def test_records_of_acknowledged_messages_are_dropped(r: fakeredis.FakeRedis) -> None:
    reaper.record(r, "gone", "dead", "task-gone")
    assert reaper.reap(r) == 0
    assert r.hlen(keys.INFLIGHT) == 0 and r.llen(QUEUE) == 0


def test_status_lists_in_flight_messages_with_age_worker_and_request(r: fakeredis.FakeRedis) -> None:
    r.set(keys.node("alive"), "1")
    delivered(r, "t1", "alive", at=100.0)
    (entry,) = in_flight(r, now=130.0)
    assert entry == {
        "delivery_tag": "t1",
        "age_s": 30.0,
        "queue": QUEUE,
        "task_id": "task-t1",
        "request_id": "r1",
        "benchmark_key": "k",
        "worker": "alive",
        "worker_alive": True,
    }


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "a full disk"),
        (ConnectionRefusedError(111, "Connection refused"), "the MLflow store unreachable"),
        (OperationalError("SELECT 1", {}, Exception("database is locked")), "the MLflow store unavailable"),
        (
            MlflowException("API request to /api/2.0/mlflow/runs/create failed with error code 503"),
            "the MLflow store unavailable",
        ),
        (RuntimeError("the model raised"), None),
        (TrackingError("run abc not found in the MLflow store sqlite:///x.db"), None),
        (ValueError("shape mismatch"), None),
    ],
)
def test_what_counts_as_an_outage(exc: BaseException, outage: str | None) -> None:
    wrapped = TrackingError("logging the results of run r in the MLflow store s failed")
    wrapped.__cause__ = exc
    assert outage_of(exc) == outage
    if not isinstance(exc, TrackingError):
        assert outage_of(wrapped) == outage


def test_the_outage_budget_backs_off_then_runs_out(r: fakeredis.FakeRedis) -> None:
    budget = OutageBudget(r, budget_s=60, backoff_s=1)
    waits = [budget.wait("req", now=1000.0 + i) for i in range(6)]
    assert waits == [1, 2, 4, 8, 15, 15]  # doubling, at most a quarter of the budget
    assert budget.wait("req", now=1060.0) is None  # spent: failures count as attempts from here
    budget.clear("req")
    assert budget.wait("req", now=2000.0) == 1
