"""The fenced lock and the fenced commit (fakeredis with Lua; the same contract runs on redis-server in
tests/integration/test_pipeline.py)."""

from __future__ import annotations

import time

import fakeredis
import pytest

from podium.streams import keys
from podium.streams.lock import FencedLock, LockLost

KEY = "a" * 64


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


def test_acquire_gives_increasing_fencing_tokens(r) -> None:
    first = FencedLock.for_benchmark(r, KEY, ttl_ms=1000)
    assert first.acquire() == 1
    assert FencedLock.for_benchmark(r, KEY).acquire() is None  # held
    assert first.release()
    second = FencedLock.for_benchmark(r, KEY)
    assert second.acquire() == 2


def test_renew_and_release_only_with_the_token(r) -> None:
    holder, other = FencedLock.for_benchmark(r, KEY, ttl_ms=5000), FencedLock.for_benchmark(r, KEY)
    holder.acquire()
    assert not other.renew() and not other.release()
    assert r.get(keys.lock(KEY)) == holder.token
    assert holder.renew() and holder.release()
    assert r.get(keys.lock(KEY)) is None


def test_commit_writes_marker_and_event_under_the_fence(r) -> None:
    lock = FencedLock.for_benchmark(r, KEY)
    lock.acquire()
    entry = lock.commit("run-1", '{"x": 1}')
    assert r.get(keys.done(KEY)) == "run-1"
    ((entry_id, fields),) = r.xrange(keys.BENCHMARKS_STREAM)
    assert entry_id == entry and fields == {"data": '{"x": 1}'}


def test_commit_refused_after_takeover(r) -> None:
    stale = FencedLock.for_benchmark(r, KEY, ttl_ms=1000)
    stale.acquire()
    r.delete(keys.lock(KEY))  # the TTL ran out while the holder stalled
    fresh = FencedLock.for_benchmark(r, KEY)
    assert fresh.acquire() == 2
    with pytest.raises(LockLost, match="lock not held"):
        stale.commit("stale-run", "{}")
    assert stale.lost.is_set()
    assert r.get(keys.done(KEY)) is None and r.xlen(keys.BENCHMARKS_STREAM) == 0
    fresh.commit("fresh-run", "{}")
    assert r.get(keys.done(KEY)) == "fresh-run"


def test_commit_refused_when_fence_superseded_even_with_same_token(r) -> None:
    lock = FencedLock.for_benchmark(r, KEY)
    lock.acquire()
    r.incr(keys.fence(KEY))  # a newer holder existed in between
    with pytest.raises(LockLost, match="fencing token superseded"):
        lock.commit("run", "{}")


def test_watchdog_renews_and_reports_loss(r) -> None:
    lock = FencedLock.for_benchmark(r, KEY, ttl_ms=1000)
    lock.acquire()
    lock.start_watchdog()
    time.sleep(1.5)
    assert r.get(keys.lock(KEY)) == lock.token and not lock.lost.is_set()  # renewed past the TTL
    r.set(keys.lock(KEY), "someone-else")
    deadline = time.monotonic() + 3
    while not lock.lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.lost.is_set()
    with pytest.raises(LockLost):
        lock.check()
    lock.release()
    assert r.get(keys.lock(KEY)) == "someone-else"  # never releases someone else's lock
