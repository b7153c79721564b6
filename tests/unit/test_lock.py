"""The fenced lock and the fenced commit: one contract, run on fakeredis (with Lua) and on a real
redis-server."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from podium.coordination import keys
from podium.coordination.commit import FencedCommit
from podium.coordination.lock import FencedLock
from podium.errors import LockLost
from tests.servers import start_redis, wait_until

KEY = "a" * 64


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["fakeredis", "redis-server"])
def r(request: pytest.FixtureRequest):
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis(decode_responses=True)
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_server").url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


class CountingLock(FencedLock):
    """Counts the watchdog's renewals, so a test can wait for renewals instead of for time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.renewals = 0

    def renew(self) -> bool:
        ok = super().renew()
        self.renewals += ok
        return ok


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
    entry = FencedCommit(lock).commit("run-1", '{"x": 1}')
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
        FencedCommit(stale).commit("stale-run", "{}")
    assert stale.lost.is_set()
    assert r.get(keys.done(KEY)) is None and r.xlen(keys.BENCHMARKS_STREAM) == 0
    FencedCommit(fresh).commit("fresh-run", "{}")
    assert r.get(keys.done(KEY)) == "fresh-run"


def test_commit_refused_when_fence_superseded_even_with_same_token(r) -> None:
    lock = FencedLock.for_benchmark(r, KEY)
    lock.acquire()
    r.incr(keys.fence(KEY))  # a newer holder existed in between
    with pytest.raises(LockLost, match="fencing token superseded"):
        FencedCommit(lock).commit("run", "{}")


def test_watchdog_renews_and_reports_loss(r) -> None:
    lock = CountingLock.for_benchmark(r, KEY, ttl_ms=1000)
    lock.acquire()
    lock.start_watchdog()
    assert wait_until(lambda: lock.renewals >= 4, timeout=30)  # 4 renewals, every third of the TTL: past it
    assert r.get(keys.lock(KEY)) == lock.token and not lock.lost.is_set()
    r.set(keys.lock(KEY), "someone-else")
    assert lock.lost.wait(30)
    with pytest.raises(LockLost):
        lock.check()
    lock.release()
    assert r.get(keys.lock(KEY)) == "someone-else"  # never releases someone else's lock
