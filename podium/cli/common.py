"""What every podium command shares: settings, logging, and turning errors into exit codes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from podium.errors import PodiumError

if TYPE_CHECKING:
    from podium.settings.env import PodiumSettings

#: Exit codes shared by every command.
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOTHING = 3

#: stdout and stderr of every command; lines are never wrapped, so output piped to a file can be grepped.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


#: Log lines written to a file or a pipe: one line each, never wrapped, easy to grep.
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


#: The same connection options on every command that connects (the environment variable is the default).
TrackingUriOption = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env PODIUM_TRACKING_URI)")
]
RedisUrlOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (env PODIUM_REDIS_URL)")]

#: The options of the commands that measure one model themselves (``podium bench``, ``podium tune``).
BenchmarkConfigOption = Annotated[
    Path | None, typer.Option("--config", help="benchmark.yaml (default config/benchmark.yaml)")
]
InputsOption = Annotated[
    str | None,
    typer.Option("--inputs", help="Declare the model's inputs: name:DATATYPE:dims,... e.g. a:FP32:-1x-1 (-1: dynamic)"),
]
ArtifactPathOption = Annotated[
    str | None,
    typer.Option("--artifact-path", help="Model path inside the run (default model/model.pt; .onnx for onnx)"),
]
ConcurrencyOption = Annotated[
    str | None, typer.Option("--concurrency", help="Load levels, closed loop: requests in flight, e.g. 1,2,4,8")
]
RequestRateOption = Annotated[
    str | None, typer.Option("--request-rate", help="Load levels, open loop: Poisson arrivals per second, e.g. 50,100")
]
IterationsOption = Annotated[
    int | None, typer.Option("--iterations", help="Override benchmarking.iterations (requests a window)")
]


def settings_for(tracking_uri: str | None = None, redis_url: str | None = None) -> PodiumSettings:
    """``PODIUM_*`` settings with the command line's connections on top. They are exported to the environment
    too, so that the processes a command starts (a worker's pool processes) read the same ones."""
    if tracking_uri:
        os.environ["PODIUM_TRACKING_URI"] = tracking_uri
    if redis_url:
        os.environ["PODIUM_REDIS_URL"] = redis_url
    from podium.settings.env import PodiumSettings

    return PodiumSettings()


def setup_logging(verbose: int) -> None:
    """Rich output on a terminal; plain, unwrapped, timestamped lines anywhere else (files, pipes, journald)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    handler: logging.Handler
    if err_console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # MLflow announces its sqlite migrations at INFO; keep them out unless asked for.
    logging.getLogger("mlflow").setLevel(max(level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    # A store that is down is one error line, not one warning per HTTP retry.
    logging.getLogger("urllib3.connectionpool").setLevel(max(level, logging.ERROR))


def redis_or_fail(url: str, doing: str):
    """A connected Redis client, or one line (exit 2) that says Redis is down and what to do."""
    import redis

    from podium.coordination.connection import connect
    from podium.settings.env import redact_url

    client = connect(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        fail(
            f"cannot {doing}: Redis at {redact_url(url)} is not reachable ({exc}); "
            "start Redis, or set PODIUM_REDIS_URL to where it runs"
        )
    return client


def int_list(value: str | None, option: str) -> list[int] | None:
    """``1,8,32`` as integers, or one line (exit 2) naming the option and the bad part."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        fail(f"{option} must be comma-separated integers such as 1,8,32, got {value!r}")


def input_list(value: str | None, option: str) -> list[dict[str, object]] | None:
    """``input_ids:INT64:-1x-1,mask:BOOL:-1x128`` as input declarations (name:DATATYPE:dims, dims joined by
    ``x``, -1 for dynamic), or one line (exit 2) naming the option and the bad part."""
    if value is None:
        return None
    out: list[dict[str, object]] = []
    for part in value.split(","):
        try:
            name, datatype, dims = part.split(":")
            out.append({"name": name, "datatype": datatype.upper(), "shape": [int(d) for d in dims.split("x")]})
        except ValueError:
            fail(f"{option} takes name:DATATYPE:dims entries such as input_ids:INT64:-1x-1, got {part!r}")
    return out


def log_at_least(logger: str, level: int) -> None:
    """Let ``logger`` through at ``level`` even when the command runs without ``-v``."""
    current = logging.getLogger(logger)
    if current.getEffectiveLevel() > level:
        current.setLevel(level)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """A missing optional package becomes one line naming the pip extra that brings it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        fail(f"{what} needs the {exc.name} package, which is not installed: pip install 'podium[{extra}]'")


@contextmanager
def podium_errors() -> Iterator[None]:
    """Any ``PodiumError`` becomes one readable line on stderr and exit code 2."""
    try:
        yield
    except PodiumError as exc:
        fail(str(exc))
