"""``podium watch``: a live table of the best model of each study and config."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from podium.cli.common import podium_errors

if TYPE_CHECKING:
    from podium.core.messages import BestModelUpdate


def render(rows: dict[tuple[str, str | None], BestModelUpdate]) -> Table:
    table = Table(title="podium: best model per study and benchmark config (live)")
    columns = ("study", "config", "seq", "why", "trial", "backbone", "objective", "latency ms", "runs", "doubt", "at")
    for col in columns:
        table.add_column(col, justify="right" if col in ("seq", "objective", "latency ms", "runs") else "left")
    for (study, config), u in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        b = u.best
        table.add_row(
            study[:10],
            (config or "legacy")[:10],
            str(u.seq),
            u.reason,
            b.trial_key_hash[:10] if b else "-",
            (b.backbone or "-") if b else "-",
            f"{b.f1_score:.4f}" if b else "-",
            f"{b.latency_ms:.3f}" if b else "-",
            str(b.benchmark_runs_count) if b else "-",
            doubt(u),
            time.strftime("%H:%M:%S", time.localtime(u.published_at)),
        )
    return table


def doubt(update: BestModelUpdate) -> str:
    """``unstable`` when the best's figure is in doubt, and how many candidates are."""
    best = "unstable" if update.best is not None and update.best.unstable else ""
    others = f"{update.unstable_candidates}/{update.candidates} unstable" if update.unstable_candidates else ""
    return " · ".join(p for p in (best, others) if p) or "-"


def watch(
    study: Annotated[str | None, typer.Option(help="Only this study_key_hash (or a unique 6+ prefix)")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL [env PODIUM_REDIS_URL]")] = None,
    exit_after: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
) -> None:
    """Follow best-model updates live (latest values first). Ctrl-C to stop."""
    from rich.live import Live

    from podium.settings.env import PodiumSettings
    from podium.streams.subscriber import subscribe

    rows: dict[tuple[str, str | None], BestModelUpdate] = {}
    stop = threading.Event()
    if exit_after:
        threading.Timer(exit_after, stop.set).start()
    with podium_errors(), Live(render(rows), refresh_per_second=4) as live:
        try:
            for update in subscribe(redis_url or PodiumSettings().redis_url, study, stop=stop):
                rows[(update.study_key_hash, update.benchmark_config_hash)] = update
                live.update(render(rows))
        except KeyboardInterrupt:
            pass
