"""podium's Redis transport on a real redis-server whose memory is full: acknowledging still works (kombu's
MULTI was refused whole, and the error stopped the worker from its event loop: seen in the OOM chaos test);
a requeue refused for memory does not raise, and the message is back once memory is freed."""

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
        freed, refused = threading.Event(), threading.Event()

        def free_memory_once_it_waits() -> None:
            # free memory once Redis has refused the requeue (the transport then waits and tries again)
            for _ in range(600):
                if plain.info("stats").get("total_error_replies", 0) > 0:
                    refused.set()
                    break
                freed.wait(0.05)
            plain.config_set("maxmemory", 0)
            freed.set()

        helper = threading.Thread(target=free_memory_once_it_waits)
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
