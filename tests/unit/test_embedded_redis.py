"""The demo's embedded Redis: redis-server when installed, else a fakeredis TCP server (TCP_NODELAY)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from podium.coordination import embedded
from podium.coordination.commit import FencedCommit
from podium.coordination.lock import FencedLock


def test_falls_back_to_fakeredis_and_speaks_the_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    server = embedded.LocalRedis(tmp_path).start()
    try:
        assert server.kind.startswith("embedded fakeredis")
        client = redis.Redis.from_url(server.url, decode_responses=True)
        lock = FencedLock.for_benchmark(client, "e" * 64)  # Lua scripts work through it
        assert lock.acquire() == 1
        FencedCommit(lock).commit("run", "{}")
        assert client.get("podium:done:" + "e" * 64) == "run"
        client.close()
    finally:
        server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=server.port, socket_connect_timeout=0.5).ping()
