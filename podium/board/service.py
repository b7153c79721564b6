"""The board's running parts: one Redis client for reads, the shared feed, the selection cache, wired so that an
update invalidates its study's selection and a reload tells that study's pages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from podium.board.feed import Feed
from podium.board.selections import MlflowSelections, SelectionCache
from podium.coordination.connection import connect

#: Seconds before a page's Redis read gives up while Redis is away (the page then shows what the feed holds).
READ_CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 5.0


@dataclass
class Board:
    feed: Feed
    cache: SelectionCache
    #: For page reads (status, workers, activity): short timeouts, so a page answers while Redis is away.
    reads: redis.Redis
    #: ``podium:...`` keys come from here.
    tracking_uri: str
    #: The MLflow UI that run links point at (None: the run ids are shown without links).
    mlflow_ui: str | None = None

    def start(self) -> None:
        self.cache.start()
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()
        self.cache.stop()
        self.reads.close()
        self.feed.client.close()


def build_board(
    redis_url: str,
    tracking_uri: str,
    config_dir: Path,
    config: Path | None = None,
    experiments: list[str] | None = None,
    clock_ms: tuple[int, int] = (300_000, 3_600_000),
    mlflow_ui: str | None = None,
) -> Board:
    """``mlflow_ui``: the MLflow UI to link runs to (an http(s) URL); None links none."""
    reads = redis.Redis.from_url(
        redis_url,
        decode_responses=True,
        socket_connect_timeout=READ_CONNECT_TIMEOUT_S,
        socket_timeout=READ_TIMEOUT_S,
    )
    cache = SelectionCache(
        MlflowSelections(tracking_uri, config_dir, config, experiments, clock_ms, trial_runs=mlflow_ui is not None)
    )
    feed = Feed(connect(redis_url), on_update=cache.invalidate)

    def refreshed(studies: set[str] | None) -> None:
        if studies is None:
            feed.broadcast(("refreshed", None))
        for study in sorted(studies or ()):
            feed.broadcast(("refreshed", study), study)

    cache.on_refreshed = refreshed
    cache.seqs = feed.seqs
    return Board(feed, cache, reads, tracking_uri, mlflow_ui)
