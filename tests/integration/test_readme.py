"""README's snippets run as written (the training snippet: tests/integration/test_training.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from podium.aggregator.publisher import Publisher
from podium.core.decision import Channel, update_of
from podium.core.selection import Candidate, Selection
from podium.testing import Unfenced
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
        client = redis.Redis.from_url(server.url, decode_responses=True)
        channel = Channel(STUDY, "c" * 64, "weighted", "median")
        update = Publisher(client, Unfenced(client)).publish(
            update_of("first", Selection(STUDY, "c" * 64, best, (best,)), channel)
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


def layout_rooms(readme: str) -> list[str]:
    """The rooms the Layout section's table names in its first column (`core/`, or `broker/`, `monitoring/`)."""
    start = readme.index("## Layout")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else None]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [room for row in rows for room in re.findall(r"`([a-z_]+)/`", row.split("|")[1])]


def test_the_layout_table_names_every_room_and_no_other() -> None:
    named = layout_rooms((REPO / "README.md").read_text())
    rooms = sorted(p.name for p in (REPO / "podium").iterdir() if (p / "__init__.py").is_file())
    assert len(named) == len(set(named)), f"README's Layout names a room twice: {named}"
    assert sorted(named) == rooms, (
        f"README's Layout table does not describe {sorted(set(rooms) - set(named))} and names rooms that do not "
        f"exist: {sorted(set(named) - set(rooms))}"
    )


def test_the_layout_check_reads_only_the_tables_first_column() -> None:
    """A room mentioned in a description, or after the Layout section, is not a room the table describes."""
    readme = (
        "## Layout\n\n| room | holds |\n| --- | --- |\n| `core/` | pure; see `board/` |\n"
        "| `broker/`, `monitoring/` | the app |\n\n## Later\n\n| `cli/` | commands |\n"
    )
    assert layout_rooms(readme) == ["core", "broker", "monitoring"]
