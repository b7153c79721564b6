"""``podium ARGS`` run inside the test process: the real command line (typer's app, its exit codes, what it prints
on stdout and stderr), without the 1-2 s of CPU a new interpreter spends importing MLflow. For tests of what a
command says and decides. Tests of the process boundary itself (the console script, an environment of its own,
signals) start a real process instead."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from typer.testing import CliRunner

from podium.cli import app


def podium_in_process(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``podium ARGS`` with ``env`` on top of this process's environment (for the call only; None removes a
    variable), ``input`` on its stdin and ``cwd`` as its folder; returns what ``subprocess.run(...,
    capture_output=True, text=True)`` would."""
    # what podium's console script sets before the app runs (podium.cli.main)
    defaults = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_LOGGING_LEVEL": "WARNING"}
    env = {k: v for k, v in defaults.items() if k not in os.environ} | dict(env or {})
    with _logging_kept(), _folder(cwd):
        result = CliRunner().invoke(app, list(args), env=env, input=input, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # a crash a real process would print as a traceback on stderr (exit 1): show it in the test's failure
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(["podium", *args], 1, result.stdout, result.stderr + trace)
    return subprocess.CompletedProcess(["podium", *args], result.exit_code, result.stdout, result.stderr)


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """The command sets up logging on the root logger (to the runner's streams, closed after the call): this
    process's logging is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("mlflow", "alembic", "urllib3.connectionpool")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in named.items():
            logging.getLogger(name).setLevel(was)


@contextlib.contextmanager
def _folder(cwd: Path | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    before = Path.cwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)
