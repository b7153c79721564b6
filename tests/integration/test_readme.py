"""README's snippets run as written (the training snippet: tests/integration/test_training.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from podium.aggregator.publisher import Publisher
from podium.core.selection import Candidate, Selection
from tests.conftest import REPO
from tests.servers import start_redis

STUDY = "5" * 64


def python_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(heading) :], re.S).group(1)


@pytest.mark.server
def test_the_subscribe_snippet_prints_the_current_best(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        best = Candidate("7" * 64, "8" * 64, 0.91, 4.1, 3, "bench-run", "trial-run", "refit-run", "tiny")
        update = Publisher(redis.Redis.from_url(server.url, decode_responses=True)).publish(
            Selection(STUDY, "c" * 64, best, (best,)), STUDY, "c" * 64, "first", "weighted", "median"
        )
        # the snippet as written, with this test's Redis and a short study hash (as the tables show it)
        snippet = python_block("## Subscribe").replace("redis://127.0.0.1:6379/0", server.url)
        snippet = snippet.replace('study_key_hash="..."', f'study_key_hash="{STUDY[:8]}"')
        proc = subprocess.Popen(
            [sys.executable, "-c", snippet], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            line = proc.stdout.readline().split()  # the late joiner gets the current best first
        finally:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        assert line == [str(update.seq), "first", "7" * 64, "4.1"], err
    finally:
        server.stop()


def test_the_layout_table_names_every_room() -> None:
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Layout") :]
    rooms = sorted(p.name for p in (REPO / "podium").iterdir() if p.is_dir() and p.name != "__pycache__")
    missing = [room for room in rooms if f"`{room}/`" not in layout]
    assert missing == [], f"README's Layout does not describe {missing}"
