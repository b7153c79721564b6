"""Bounded keys: done markers and fences expire; a study's best-model keys are removed with `podium forget`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from podium.aggregator.publisher import Publisher
from podium.coordination import keys
from podium.core.decision import Channel, update_of
from podium.testing import Unfenced
from tests.cli import podium_in_process
from tests.servers import start_redis

pytestmark = pytest.mark.server
GONE, KEPT = "a" * 64, "b" * 64


def podium(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return podium_in_process(*args, env={"PODIUM_REDIS_URL": url}, input=stdin)


def test_forget_removes_one_studys_keys_and_nothing_else(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        publisher = Publisher(r, Unfenced(r))
        for study in (GONE, KEPT):
            for config in ("c" * 64, "d" * 64):
                publisher.publish(update_of("first", None, Channel(study, config, "weighted", "median")))
        before = r.xlen(keys.BEST_UPDATES_STREAM)
        refused = podium(server.url, "forget", "--study", GONE[:8], stdin="n\n")
        assert refused.returncode == 1 and r.exists(keys.sequence(GONE))  # asked, said no: nothing removed
        done = podium(server.url, "forget", "--study", GONE[:8], "--yes")
        assert done.returncode == 0, done.stderr
        assert "Removed 3 key(s)." in done.stdout
        assert not r.exists(keys.sequence(GONE), keys.best_latest(GONE, "c" * 64), keys.best_latest(GONE, "d" * 64))
        assert r.exists(keys.sequence(KEPT), keys.best_latest(KEPT, "c" * 64), keys.best_latest(KEPT, "d" * 64)) == 3
        assert r.xlen(keys.BEST_UPDATES_STREAM) == before  # the history keeps its past
        unknown = podium(server.url, "forget", "--study", "0123456789", "--yes")
        assert unknown.returncode == 2 and "no study hash starts with '0123456789'" in unknown.stderr
        r.close()
    finally:
        server.stop()
