"""Clear failures at the edges: one line on stderr, exit code 2, saying what is wrong and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli import podium_in_process

DOWN = "redis://127.0.0.1:1/0"


def podium(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return podium_in_process(*args, env={"PODIUM_REDIS_URL": DOWN, **(env or {})})


def one_line_exit_2(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.strip().count("\n") == 0, out.stderr
    return out.stderr


@pytest.mark.parametrize(
    ("command", "doing"),
    [(["status"], "read podium's status"), (["enqueue", "--run-id", "abc"], "enqueue"), (["worker"], "start a worker")],
)
def test_redis_down_is_one_line_with_a_hint(command: list[str], doing: str, store_uri: str) -> None:
    err = one_line_exit_2(podium(*command, env={"PODIUM_TRACKING_URI": store_uri}))
    assert f"cannot {doing}" in err and "127.0.0.1:1" in err and "start Redis, or set PODIUM_REDIS_URL" in err


def test_an_unknown_tracking_scheme_is_named(tmp_path: Path) -> None:
    err = one_line_exit_2(podium("select", "--tracking-uri", f"sqlit:///{tmp_path}/mlflow.db"))
    assert "unknown scheme 'sqlit'" in err and "sqlite:///" in err


def test_an_unreachable_tracking_server_is_one_line() -> None:
    err = one_line_exit_2(podium("select", "--tracking-uri", "http://127.0.0.1:1"))
    assert "listing the experiments in the MLflow store http://127.0.0.1:1 failed" in err


def test_a_bad_batch_size_list_is_named(tmp_path: Path) -> None:
    err = one_line_exit_2(podium("bench", "--model-uri", str(tmp_path / "m.pt"), "--no-log", "--batch-sizes", "1,x"))
    assert "--batch-sizes must be comma-separated integers" in err and "'1,x'" in err


def test_an_empty_file_is_not_turned_into_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "mlflow.db"
    empty.touch()
    err = one_line_exit_2(podium("select", "--tracking-uri", f"sqlite:///{empty}"))
    assert "is an empty file, not an MLflow store" in err
    assert empty.stat().st_size == 0  # left as it was
