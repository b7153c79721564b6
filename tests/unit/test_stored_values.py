"""The pure checks of values read from the store (issue 25, round 3): tag rules per run, a start time in the
future placed at its commit, done means a result, and the eviction guard's decisions."""

from __future__ import annotations

import logging
import math

import pytest

from podium.coordination import keys
from podium.coordination.policy import EvictionGuard
from podium.core.existing import BenchmarkIndex, holds_result, pick_with_result, result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.records import BenchmarkRecord, Champion, refused_tag
from podium.core.verification import SkewBounds, stored_start, trusted_start
from tests.servers import start_redis

CLOCK = SkewBounds(max_skew_ms=300_000, max_benchmark_ms=3_600_000)
NOW = 1_800_000_000_000
DAY_MS = 86_400_000


# ---------------------------------------------------------------- tag rules


@pytest.mark.parametrize(
    ("value", "rule", "says"),
    [
        ("o'brien", "safe", "may only hold letters"),
        ("a b", "safe", "may only hold letters"),
        ("x" * 5000, "text", "is 5000 characters long (at most 256)"),
        ("x" * 5000, "safe", "is 5000 characters long"),
        ("ABC", "hex64", "must be 64 lowercase hex"),
    ],
)
def test_a_tag_that_breaks_its_rule_names_the_run_and_the_tag(value: str, rule, says: str) -> None:
    refused = refused_tag("run1", [("code.ok", "fine", "safe"), ("code.bad", value, rule)])
    assert refused is not None and (refused.run_id, refused.tag) == ("run1", "code.bad")
    assert says in refused.problem and len(str(refused)) < 400  # never the whole 5,000 characters
    assert str(refused).startswith("run run1: its tag code.bad ")


def test_absent_and_good_values_pass() -> None:
    assert (
        refused_tag("r", [("a", None, "safe"), ("b", "e" * 64, "hex64"), ("c", "free text, 'quoted'", "text")]) is None
    )


# ---------------------------------------------------------------- start times without a stream entry


def record(start: int) -> BenchmarkRecord:
    return BenchmarkRecord("run-f", start, "s", "t", "k" * 64, "c" * 64, {"latency_batch_1_ms": 1.0})


def test_a_future_start_is_placed_at_its_end_time() -> None:
    placed, warning = stored_start(record(NOW + DAY_MS), NOW - 5_000, NOW, CLOCK)
    assert placed.start_time == NOW - 5_000 and warning is not None and "run run-f starts +" in warning
    assert "its end time" in warning


def test_a_future_start_with_a_future_end_is_placed_at_the_readers_clock() -> None:
    placed, warning = stored_start(record(NOW + DAY_MS), NOW + DAY_MS, NOW, CLOCK)
    assert placed.start_time == NOW and warning is not None


@pytest.mark.parametrize("start", [NOW - 30 * DAY_MS, NOW - 1, NOW + 299_000])
def test_a_past_start_or_one_within_the_skew_is_believed(start: int) -> None:
    assert stored_start(record(start), None, NOW, CLOCK) == (record(start), None)


def test_live_and_stored_place_a_future_run_at_the_same_commit() -> None:
    """The live check uses the stream entry's time; a rebuild the run's end time: for a run ended at its commit
    they agree (the same function decides both)."""
    live, _ = trusted_start(record(NOW + DAY_MS), NOW, CLOCK)
    rebuilt, _ = stored_start(record(NOW + DAY_MS), NOW, NOW + 60_000, CLOCK)
    assert live.start_time == rebuilt.start_time == NOW


# ---------------------------------------------------------------- done means a result


def test_result_metrics_are_the_mean_latency_of_every_batch_size() -> None:
    assert result_metrics([8, 1, 8]) == ("latency_batch_1_ms", "latency_batch_8_ms")


def test_holds_result_needs_every_metric_and_no_nan() -> None:
    need = result_metrics([1, 8])
    assert holds_result({"latency_batch_1_ms": 1.0, "latency_batch_8_ms": 2.0, "x": 3.0}, need)
    assert not holds_result({"latency_batch_1_ms": 1.0}, need)
    assert not holds_result({"latency_batch_1_ms": 1.0, "latency_batch_8_ms": math.nan}, need)
    assert not holds_result({}, need)


def test_the_newest_run_with_a_result_answers_and_empty_ones_are_named() -> None:
    assert pick_with_result([("empty", False), ("good", True)], "benchmark_key").found.run_id == "good"
    nothing = pick_with_result([("e1", False), ("e2", False)], "benchmark_key")
    assert nothing.found is None and nothing.no_result == ("e1", "e2")


def test_the_index_skips_a_keyed_run_without_a_result() -> None:
    champion = Champion("champ", "s", "t", "d", "e")
    identity = BenchmarkIdentity("champ", "d", "e", "c" * 64)
    empty = BenchmarkRecord("empty", 2, "s", "t", identity.key, "c" * 64, {})
    need = result_metrics([1])
    lookup = BenchmarkIndex.build([empty]).find(identity, champion, need)
    assert lookup.found is None and lookup.no_result == ("empty",)
    good = BenchmarkRecord("good", 1, "s", "t", identity.key, "c" * 64, {"latency_batch_1_ms": 3.0})
    assert BenchmarkIndex.build([empty, good]).find(identity, champion, need).found.run_id == "good"
    legacy = BenchmarkRecord("legacy", 1, "s", "t", None, None, {})
    assert BenchmarkIndex.build([legacy]).find(identity, champion, need).no_result == ("legacy",)


# ---------------------------------------------------------------- the eviction guard (a real redis-server)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_client(tmp_path):
    import redis

    server = start_redis(tmp_path / "redis")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
        server.stop()


@pytest.mark.server
def test_the_guard_stops_intake_once_and_resumes(redis_client, caplog) -> None:
    ticks = Ticks()
    guard = EvictionGuard(redis_client, "podium worker w:1", accept=False, every_s=10, clock=ticks)
    assert guard.allows()
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    assert guard.allows()  # read at most every 10 s: not yet seen
    with caplog.at_level(logging.WARNING, "podium.coordination.policy"):
        for _ in range(3):
            ticks.now += 10
            assert not guard.allows()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "allkeys-lru" in errors[0].getMessage()
    assert "stopped taking work" in errors[0].getMessage()
    (key,) = redis_client.scan_iter(keys.INTAKE_STOPPED_PATTERN)
    assert "podium worker w:1: maxmemory-policy allkeys-lru since" in redis_client.get(key)
    redis_client.config_set("maxmemory-policy", "noeviction")
    ticks.now += 10
    assert guard.allows() and list(redis_client.scan_iter(keys.INTAKE_STOPPED_PATTERN)) == []


@pytest.mark.server
def test_accepted_eviction_warns_and_never_stops(redis_client, caplog) -> None:
    ticks = Ticks()
    guard = EvictionGuard(redis_client, "podium aggregator a", accept=True, every_s=1, clock=ticks)
    redis_client.config_set("maxmemory-policy", "volatile-lru")
    with caplog.at_level(logging.WARNING, "podium.coordination.policy"):
        for _ in range(3):
            ticks.now += 1
            assert guard.allows()
    assert [r.getMessage() for r in caplog.records if "PODIUM_ACCEPT_REDIS_EVICTION" in r.getMessage()] != []
    assert len(caplog.records) == 1  # once per change, not per check
    assert list(redis_client.scan_iter(keys.INTAKE_STOPPED_PATTERN)) == []


# ---------------------------------------------------------------- backfill: one refused champion stops nothing


def test_send_missing_sends_the_others_and_lists_the_refused() -> None:
    from podium.core.messages import BenchmarkRequest
    from podium.errors import BrokerUnavailable
    from podium.producers.backfill import PendingBenchmark, send_missing
    from podium.producers.enqueue import Enqueued

    def pending(run: str) -> PendingBenchmark:
        return PendingBenchmark(Champion(run, "s", "t", "d", "e"), BenchmarkIdentity(run, "d", "e", "c" * 64))

    def send(item: PendingBenchmark) -> Enqueued:
        if item.champion.run_id == "bad":
            BenchmarkRequest.model_validate({"champion_run_id": "bad", "data_fp": "x" * 5000})  # raises
        return Enqueued("k" * 64, f"task-{item.champion.run_id}", "podium.cpu", "r")

    sent, refused = send_missing([pending("a"), pending("bad"), pending("b")], send)
    assert [e.task_id for e in sent] == ["task-a", "task-b"]
    (refusal,) = refused
    assert refusal.run_id == "bad" and "its request is refused" in refusal.why and "data_fp" in refusal.why
    assert "\n" not in refusal.why

    def away(item: PendingBenchmark) -> Enqueued:
        raise BrokerUnavailable("Redis is away")

    with pytest.raises(BrokerUnavailable):
        send_missing([pending("a")], away)
