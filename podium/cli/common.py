"""What every podium command shares: settings, logging, and turning errors into exit codes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

from podium.errors import PodiumError

#: Exit codes shared by every command.
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOTHING = 3

err_console = Console(stderr=True)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
    # MLflow announces its sqlite migrations at INFO; keep them out unless asked for.
    logging.getLogger("mlflow").setLevel(max(level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def podium_errors() -> Iterator[None]:
    """Any ``PodiumError`` becomes one readable line on stderr and exit code 2."""
    try:
        yield
    except PodiumError as exc:
        fail(str(exc))
