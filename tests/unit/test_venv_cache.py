"""The install tests' venv cache holds two venvs of each kind at most: the one in use and the one used last."""

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


NOW = 1_000_000_000.0


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(venvs, "CACHE", tmp_path)
    return tmp_path


def test_older_venvs_of_the_same_kind_go_but_the_one_used_last_and_other_kinds_stay(cache: Path) -> None:
    tmp_path, now = cache, NOW
    keep = venv(tmp_path, "bare-new", now)
    stale = venv(tmp_path, "bare-old", now - venvs.STALE_S - 1)
    recent = venv(tmp_path, "bare-other-checkout", now - 60)  # another checkout may be using it right now
    earlier = venv(tmp_path, "bare-earlier", now - 3600)  # used today, but not last: a third is one too many
    other_kind = venv(tmp_path, "dockerfile-old", now - venvs.STALE_S - 1)
    never_marked = venv(tmp_path, "bare-unmarked", None)
    os.utime(never_marked, (now - venvs.STALE_S - 1, now - venvs.STALE_S - 1))

    assert sorted(venvs.prune_stale("bare", keep, now)) == sorted([stale, never_marked, earlier])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep.name, recent.name, other_kind.name])


def test_the_one_used_last_goes_too_once_nobody_used_it_for_a_day(cache: Path) -> None:
    tmp_path, now = cache, NOW
    keep = venv(tmp_path, "onnx-text-new", now)
    old = venv(tmp_path, "onnx-text-old", now - venvs.STALE_S - 1)
    assert venvs.prune_stale("onnx-text", keep, now) == [old]
    assert [p.name for p in tmp_path.iterdir()] == [keep.name]
