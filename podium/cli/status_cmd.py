"""``podium status``: queues, running benchmarks, stale locks, dead letters, the current best per study."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from podium.cli.common import RedisUrlOption, console, fail, redis_or_fail


def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """What podium is doing now (read from Redis)."""
    import redis

    from podium.coordination.status import collect
    from podium.settings.env import PodiumSettings, redact_url

    settings = PodiumSettings()
    url = redis_url or settings.redis_url
    client = redis_or_fail(url, "read podium's status")
    try:
        report = collect(client, accept_eviction=settings.accept_redis_eviction)
    except redis.RedisError as exc:
        fail(f"cannot read status from Redis at {redact_url(url)}: {exc}")
    if as_json:
        typer.echo(json.dumps(report))
        return
    console.print(f"Redis {redact_url(url)}", highlight=False)
    _print_work(report)
    _print_health(report)
    _print_best(report)


def _print_work(report: dict[str, Any]) -> None:
    queues = Table(title="Queues")
    queues.add_column("queue")
    queues.add_column("waiting", justify="right")
    for name, depth in report["queues"].items():
        queues.add_row(name, str(depth))
    console.print(queues)
    running = Table(title=f"Running benchmarks ({len(report['running'])})")
    for col in ("benchmark_key", "phase", "progress", "worker", "target", "running s", "heartbeat age s"):
        running.add_column(col)
    for r in report["running"]:
        running.add_row(
            r["benchmark_key"][:12],
            r["phase"],
            r["progress"],
            r["worker"],
            r["target"],
            str(r["running_s"]),
            str(r["heartbeat_age_s"]),
        )
    console.print(running)
    _print_in_flight(report)
    _print_workers(report)
    _print_cores(report)


def _print_in_flight(report: dict[str, Any]) -> None:
    """Messages delivered and not yet acknowledged: running, waiting for a retry, or held by a dead worker
    (requeued once its liveness key expires)."""
    table = Table(title=f"In flight, unacknowledged ({len(report['in_flight'])})")
    for col in ("request", "benchmark_key", "queue", "age s", "worker", "alive"):
        table.add_column(col)
    for m in report["in_flight"]:
        alive = m.get("worker_alive")
        table.add_row(
            escape(m.get("request_id") or m.get("task_id") or "?"),
            (m.get("benchmark_key") or "-")[:12],
            escape(m.get("queue") or "-"),
            "-" if m.get("age_s") is None else f"{m['age_s']:.0f}",
            escape(m.get("worker") or "unknown"),
            "-" if alive is None else ("yes" if alive else "[yellow]NO[/] (requeued soon)"),
        )
    console.print(table)


def _print_workers(report: dict[str, Any]) -> None:
    workers = Table(title=f"Ready worker processes ({len(report['workers'])})")
    for col in ("worker", "ready for s", "warmed", "MLflow store"):
        workers.add_column(col)
    for w in report["workers"]:
        age = report["at"] - float(w.get("ready_at") or report["at"])
        workers.add_row(escape(w["name"]), f"{age:.0f}", escape(w.get("warmed", "-")), escape(w.get("store", "-")))
    console.print(workers)


def _print_cores(report: dict[str, Any]) -> None:
    cores = Table(title="Cores per host (claimed by measurements running now)")
    for col in ("host", "usable", "in use", "claims", "contended"):
        cores.add_column(col)
    for h in report["cores"]:
        claims = ", ".join(f"{c['core']}: {c['worker']}" for c in h["claimed"])
        cores.add_row(
            escape(h["host"]),
            h["usable"] or "-",
            f"{len(h['claimed'])}/{h['usable_count']}",
            escape(claims) or "-",
            escape(", ".join(h["contended"])) or "-",
        )
    console.print(cores)


def _print_health(report: dict[str, Any]) -> None:
    for problem in report["redis"]["problems"]:
        console.print(f"[yellow]Redis:[/] {escape(problem)}")
    if report["stale_locks"]:
        console.print(
            f"[yellow]{len(report['stale_locks'])} stale lock(s)[/] (no fresh heartbeat; they expire "
            "with their TTL): " + ", ".join(s["benchmark_key"][:12] for s in report["stale_locks"])
        )
    dl = report["dead_letters"]
    console.print(
        f"Dead letters: {dl['count']}" + "".join(f"\n  {d['id']} {d['source']}: {d['error']}" for d in dl["latest"]),
        highlight=False,
    )
    if report["hook_missed"]:
        console.print(
            f"[yellow]Training hooks could not send {report['hook_missed']} benchmark request(s)[/] while Redis or "
            "MLflow was away: run `podium backfill` to send what is missing."
        )
    if report["aggregator"]:
        a = report["aggregator"]
        console.print(f"Aggregator: leader {'yes' if a['leader'] else 'NO'}, lag {a['lag']}, pending {a['pending']}")


def _print_best(report: dict[str, Any]) -> None:
    best = Table(title="Current best per study and config")
    for col in ("label", "study", "config", "seq", "trial", "backbone", "objective", "latency ms"):
        best.add_column(col)
    for b in report["best"]:
        c = b["best"] or {}
        best.add_row(
            b.get("label") or "-",
            b["study_key_hash"][:12],
            (b["benchmark_config_hash"] or "legacy")[:12],
            str(b["seq"]),
            c.get("trial_key_hash", "-")[:12],
            c.get("backbone") or "-",
            f"{c['f1_score']:.4f}" if c else "-",
            f"{c['latency_ms']:.3f}" if c else "-",
        )
    console.print(best)
