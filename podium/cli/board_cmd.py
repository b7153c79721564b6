"""``podium board``: a live, read-only web page per study (needs the ``board`` extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from podium.cli.common import RedisUrlOption, TrackingUriOption, console, needs_extra, settings_for

#: Where the board listens unless told: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: The board's bearer token, when set (pages, JSON endpoints and the event stream all need it).
TOKEN_ENV = "PODIUM_BOARD_TOKEN"


def board(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; set a token then)")] = (
        DEFAULT_HOST
    ),
    port: Annotated[int, typer.Option(help="Port to listen on")] = DEFAULT_PORT,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml (default config/...)")] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment name (repeatable); default: all active")
    ] = None,
    mlflow_ui: Annotated[
        str | None,
        typer.Option(
            "--mlflow-ui",
            help="MLflow UI to link runs to, an http(s) URL (default: the tracking URI when it is one; "
            "a sqlite store has none: run ids are shown without links)",
        ),
    ] = None,
) -> None:
    """Serve the board: studies, each study's best model with why, its history, candidates and Pareto chart,
    and the workers, updated live over Server-Sent Events. Read only: it never writes to Redis or MLflow.
    Set PODIUM_BOARD_TOKEN to require a bearer token."""
    settings = settings_for(tracking_uri, redis_url)
    with needs_extra("board", "podium board"):
        import uvicorn

        from podium.board.app import create_app
        from podium.board.service import build_board
    from podium.board.load_curves import web_ui
    from podium.settings.env import redact_url

    ui = web_ui(mlflow_ui or settings.tracking_uri)
    if mlflow_ui and ui is None:
        raise typer.BadParameter(
            f"{mlflow_ui!r} is not an http(s) URL; give the MLflow UI's address, e.g. http://mlflow.internal:5000",
            param_hint="--mlflow-ui",
        )
    token = os.environ.get(TOKEN_ENV) or None
    board_parts = build_board(
        settings.redis_url,
        settings.tracking_uri,
        settings.config_dir,
        config,
        experiment,
        (int(settings.max_clock_skew_s * 1000), settings.max_benchmark_s * 1000),  # as the aggregator
        ui,
    )
    app = create_app(board_parts, token)
    guard = "token required" if token else "no token: anyone who reaches it reads it"
    console.print(
        f"podium board on http://{host}:{port}/ (Redis {redact_url(settings.redis_url)}, MLflow "
        f"{redact_url(settings.tracking_uri)}; {guard}; run links: {ui or 'none'})",
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2, access_log=False)
