"""The demo's live view: trials, benchmark requests (with running progress), the best model as it changes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from podium.core.messages import BestModelUpdate


@dataclass
class Request:
    trial: int
    backbone: str
    key: str
    task_id: str
    status: str = "queued"
    detail: str = ""


@dataclass
class DemoState:
    header: str = ""
    trials: list[tuple[int, str, float, str]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    best: dict[str | None, BestModelUpdate] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    phase: str = "training"


def render(state: DemoState) -> Group:
    trials = Table(title="Optuna study (trained in this process, logged to MLflow)", expand=True)
    for col in ("trial", "backbone", "macro-f1", ""):
        trials.add_column(col)
    for number, backbone, f1, note in state.trials[-12:]:
        trials.add_row(str(number), backbone, f"{f1:.4f}", note)
    reqs = Table(title="Benchmark requests (Celery workers, lock per benchmark_key)", expand=True)
    for col in ("trial", "benchmark_key", "status", "detail"):
        reqs.add_column(col)
    for r in state.requests[-12:]:
        style = {"measured": "green", "reused": "cyan", "running": "yellow", "failed": "red"}.get(r.status, "")
        reqs.add_row(str(r.trial), r.key[:12] + "…", f"[{style}]{r.status}[/]" if style else r.status, r.detail)
    best = Table(title="Best model (aggregator -> podium:best:<study>)", expand=True)
    for col in ("config", "seq", "why", "trial", "backbone", "macro-f1", "latency ms (median)", "runs"):
        best.add_column(col)
    for config, u in sorted(state.best.items(), key=lambda kv: kv[0] or ""):
        b = u.best
        if b is None:
            continue
        best.add_row(
            (config or "legacy")[:10],
            str(u.seq),
            u.reason,
            b.trial_key_hash[:10],
            b.backbone or "-",
            f"{b.f1_score:.4f}",
            f"{b.latency_ms:.3f}",
            str(b.benchmark_runs_count),
        )
    elapsed = time.monotonic() - state.started
    head = Panel(f"{state.header}\n[bold]{state.phase}[/]  ·  {elapsed:.0f} s", title="podium demo")
    return Group(head, trials, reqs, best)
