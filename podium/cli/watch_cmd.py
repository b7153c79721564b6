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
    columns = (
        "label",
        "study",
        "config",
        "seq",
        "why",
        "trial",
        "backbone",
        "objective",
        "latency ms",
        "figure",
        "doubt",
        "at",
    )
    for col in columns:
        table.add_column(col, justify="right" if col in ("seq", "objective", "latency ms") else "left")
    for (study, config), u in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        b = u.best
        table.add_row(
            u.label or "-",
            study[:10],
            (config or "legacy")[:10],
            str(u.seq),
            u.reason,
            b.trial_key_hash[:10] if b else "-",
            (b.backbone or "-") if b else "-",
            f"{b.f1_score:.4f}" if b else "-",
            f"{b.latency_ms:.3f}" if b else "-",
            figure(u),
            doubt(u),
            time.strftime("%H:%M:%S", time.localtime(u.published_at)),
        )
    return table


def figure(update: BestModelUpdate) -> str:
    """What the latency is (``p50, median of 3 runs``), and a challenger within the noise of it."""
    b = update.best
    if b is None:
        return "-"
    text = b.latency_figure or f"{update.statistic or 'latency'}, {update.aggregation} of {b.benchmark_runs_count}"
    return f"{text} · {update.note}" if update.note else text


def doubt(update: BestModelUpdate) -> str:
    """Why the best's figure is in doubt (``unstable``, ``contended ...``), and how many candidates are."""
    b = update.best
    best = (b.doubt or "unstable") if b is not None and b.unstable else ""
    total = update.candidates + update.excluded
    others = f"{update.unstable_candidates}/{total} unstable" if update.unstable_candidates else ""
    return " · ".join(p for p in (best, others) if p) or "-"


def watch(
    study: Annotated[str | None, typer.Option(help="Only this study_key_hash (or a unique 6+ prefix)")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (env PODIUM_REDIS_URL)")] = None,
    exit_after: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
) -> None:
    """Follow best-model updates live (latest values first). Ctrl-C to stop."""
    from rich.live import Live

    from podium.coordination.subscriber import subscribe
    from podium.settings.env import PodiumSettings

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
