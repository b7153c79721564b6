"""``--study`` takes a unique prefix of at least 6 characters, through the real commands."""

from __future__ import annotations

import subprocess

import pytest
from mlflow import MlflowClient

from tests.cli import podium_in_process
from tests.pipeline_helpers import trial_run

A, B = "abcdef01" + "1" * 56, "abcdef02" + "2" * 56  # two studies sharing the prefix abcdef


@pytest.fixture
def studies(store_uri: str) -> None:
    client = MlflowClient(store_uri)
    for study in (A, B):
        for trial in ("3" * 64, "4" * 64):
            trial_run(client, study, trial, 0.9)


def backfill(store_uri: str, study: str) -> subprocess.CompletedProcess:
    env = {"PODIUM_TRACKING_URI": store_uri, "PODIUM_REDIS_URL": "redis://127.0.0.1:1/0"}
    return podium_in_process("backfill", "--dry-run", "--study", study, env=env)


def test_a_unique_prefix_picks_its_study(store_uri: str, studies: None) -> None:
    out = backfill(store_uri, "abcdef01")
    assert out.returncode == 0, out.stderr
    assert "2 of 2 champions have no benchmark" in out.stdout  # that study's two trials, not all four


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        ("abcdef", "study 'abcdef' is ambiguous: 2 hashes start with it (abcdef0111111111, abcdef0222222222)"),
        ("ffffff", "no study hash starts with 'ffffff'; known: abcdef011111, abcdef022222"),
        ("abc", "give the full hash or a prefix of at least 6"),
    ],
)
def test_ambiguous_unknown_or_too_short_is_one_clear_line(
    store_uri: str, studies: None, prefix: str, says: str
) -> None:
    out = backfill(store_uri, prefix)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert says in " ".join(out.stderr.split())
