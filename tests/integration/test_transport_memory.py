"""podium's Redis transport on a real redis-server whose memory is full (both failures were seen in the OOM
chaos test, each stopping a worker from its event loop): acknowledging still works (kombu's MULTI was refused
whole); a message taken off its queue while memory is full is held until it can be recorded as delivered
(kombu raised, and the message, already off the queue, was lost); a requeue refused for memory does not raise,
and the message is back once memory is freed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from kombu import Connection

from tests.servers import RedisServer, start_redis


@pytest.fixture
def server(tmp_path: Path):
    server = start_redis(tmp_path / "redis", extra=["--maxmemory-policy", "noeviction"])
    yield server
    server.process.stop()


def take_one(conn: Connection, queue: str):
    channel = conn.default_channel
    channel.client.lpush(queue, b"x")  # make the queue exist for kombu's own put below
    channel.client.delete(queue)
    simple = conn.SimpleQueue(queue)
    simple.put({"n": 1})
    message = simple.get(timeout=5)
    return simple, message


def test_an_ack_on_a_full_redis_goes_through(server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    plain = redis.Redis.from_url(url)
    with Connection(url, transport="podium.broker.transport:Transport") as conn:
        simple, message = take_one(conn, "memory-test")
        assert plain.hlen("unacked") == 1
        plain.config_set("maxmemory", 1)
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                plain.set("anything", "x")  # full: writes are refused
            message.ack()  # kombu's own transport raised OutOfMemoryError here, from the worker's event loop
        finally:
            plain.config_set("maxmemory", 0)
        assert plain.hlen("unacked") == 0 and plain.zcard("unacked_index") == 0
        simple.close()


def test_a_requeue_on_a_full_redis_waits_for_memory(server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    plain = redis.Redis.from_url(url)
    with Connection(url, transport="podium.broker.transport:Transport") as conn:
        simple, message = take_one(conn, "memory-test")
        plain.config_set("maxmemory", 1)
        refused, freed = threading.Event(), threading.Event()
        helper = threading.Thread(target=free_memory_after_a_refusal, args=(plain, oom_refusals(plain), refused, freed))
        helper.start()
        try:
            message.requeue()
        finally:
            helper.join()
            plain.config_set("maxmemory", 0)
        assert refused.is_set() and freed.is_set()
        again = simple.get(timeout=5)  # the message is back on its queue
        assert again.payload == {"n": 1}
        again.ack()
        simple.close()


def oom_refusals(plain: redis.Redis) -> int:
    """How many commands Redis has refused for memory (its own count, INFO errorstats)."""
    return int(plain.info("errorstats").get("errorstat_OOM", {}).get("count", 0))


def free_memory_after_a_refusal(
    plain: redis.Redis, before: int, refused: threading.Event, freed: threading.Event
) -> None:
    """Free memory once Redis has refused a write for memory (the transport then waits and tries again)."""
    for _ in range(600):
        if oom_refusals(plain) > before:
            refused.set()
            break
        freed.wait(0.05)
    plain.config_set("maxmemory", 0)
    freed.set()


def test_a_message_delivered_while_redis_is_full_is_held_not_lost(server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    plain = redis.Redis.from_url(url)
    with Connection(url, transport="podium.broker.transport:Transport") as conn:
        conn.default_channel.client.delete("memory-test")
        simple = conn.SimpleQueue("memory-test")
        simple.put({"n": 2})
        plain.config_set("maxmemory", 1)
        refused, freed = threading.Event(), threading.Event()
        helper = threading.Thread(target=free_memory_after_a_refusal, args=(plain, oom_refusals(plain), refused, freed))
        helper.start()
        try:
            message = simple.get(timeout=30)  # taken off the queue at once; recorded once memory is back
        finally:
            helper.join()
            plain.config_set("maxmemory", 0)
        assert refused.is_set() and message.payload == {"n": 2}
        assert plain.hlen("unacked") == 1  # recorded: a crash now would redeliver it
        message.ack()
        assert plain.hlen("unacked") == 0
        simple.close()


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")  # Celery's own call
def test_a_task_state_stored_while_redis_is_full_waits_for_memory(server: RedisServer) -> None:
    """Celery failed the task "outside body" when it could not store STARTED, then could not store the FAILURE,
    and acknowledged the message: the request was gone without a trace."""
    from podium.settings.env import PodiumSettings
    from podium.workers.app import create_worker_app

    app = create_worker_app(PodiumSettings(redis_url=f"redis://127.0.0.1:{server.port}/0"))
    plain = redis.Redis(port=server.port)
    plain.config_set("maxmemory", 1)
    refused, freed = threading.Event(), threading.Event()
    helper = threading.Thread(target=free_memory_after_a_refusal, args=(plain, oom_refusals(plain), refused, freed))
    helper.start()
    try:
        app.backend.store_result("task-1", {"status": "measured"}, "SUCCESS")
    finally:
        helper.join()
        plain.config_set("maxmemory", 0)
    assert refused.is_set()
    assert app.backend.get_task_meta("task-1")["status"] == "SUCCESS"
