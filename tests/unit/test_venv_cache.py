"""The install tests' venv cache holds about one venv of each kind: stale ones of older pyproject.toml go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tests.venvs as venvs


def venv(root: Path, name: str, used_at: float | None) -> Path:
    folder = root / name
    folder.mkdir()
    if used_at is not None:
        (folder / ".used").touch()
        os.utime(folder / ".used", (used_at, used_at))
    return folder


def test_stale_venvs_of_the_same_kind_go_and_everything_else_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(venvs, "CACHE", tmp_path)
    now = 1_000_000_000.0
    keep = venv(tmp_path, "bare-new", now)
    stale = venv(tmp_path, "bare-old", now - venvs.STALE_S - 1)
    recent = venv(tmp_path, "bare-other-checkout", now - 60)  # another checkout may be using it right now
    other_kind = venv(tmp_path, "dockerfile-old", now - venvs.STALE_S - 1)
    never_marked = venv(tmp_path, "bare-unmarked", None)
    os.utime(never_marked, (now - venvs.STALE_S - 1, now - venvs.STALE_S - 1))

    assert sorted(venvs.prune_stale("bare", keep, now)) == sorted([stale, never_marked])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep.name, recent.name, other_kind.name])
