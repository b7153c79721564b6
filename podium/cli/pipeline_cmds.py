"""``podium worker``, ``podium aggregator``, ``podium enqueue``, ``podium backfill``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from podium.cli.common import EXIT_NOTHING, console, fail, log_at_least, podium_errors, redis_or_fail

if TYPE_CHECKING:
    from podium.core.records import Champion
    from podium.producers.enqueue import Enqueued
    from podium.tracking.tracker import MlflowTracking


def worker(
    target: Annotated[str, typer.Option(help="Worker pool: consumes queue podium.<target>")] = "cpu",
    concurrency: Annotated[int, typer.Option(help="Benchmarks at once (1 per GPU)")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    triton_url: Annotated[
        str | None, typer.Option(help="This worker's Triton, HOST:PORT (HTTP or gRPC port) [env PODIUM_TRITON_URL]")
    ] = None,
) -> None:
    """Run a Celery worker for one target (e.g. cpu, gpu-h200). Same as
    `celery -A podium.workers worker -Q podium.<target> -c 1 --prefetch-multiplier 1`."""
    from podium.settings.env import PodiumSettings, redact_url
    from podium.streams import keys

    if triton_url:
        os.environ["PODIUM_TRITON_URL"] = triton_url  # the worker's processes read their settings again
    settings = PodiumSettings()
    with podium_errors():
        from podium.broker.app import verify_visibility_timeout
        from podium.workers.app import check_worker_redis, check_worker_settings, create_worker_app

        queue = keys.queue(target)
        check_worker_settings(settings)
        redis_or_fail(settings.redis_url, "start a worker")
        check_worker_redis(settings)
        app = create_worker_app(settings)
        verify_visibility_timeout(app)
    console.print(
        f"podium worker: queue {queue}, broker {redact_url(settings.redis_url)}, "
        f"MLflow {redact_url(settings.tracking_uri)}"
        + (f", Triton {settings.triton_url}" if settings.triton_url else ""),
        highlight=False,
    )
    app.worker_main(
        [
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "--prefetch-multiplier",
            "1",
            "-n",
            f"podium-{target}-{os.getpid()}@{socket.gethostname()}",
            "--loglevel",
            loglevel,
            "-E",
        ]
    )


def aggregator(
    name: Annotated[str | None, typer.Option(help="Consumer name in the group (default host-pid)")] = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml")] = None,
) -> None:
    """Consume benchmark results, keep rolling aggregates and publish the best model of each study."""
    import redis

    from podium.aggregator.service import Aggregator
    from podium.core.verification import Clock
    from podium.settings.env import PodiumSettings, redact_url
    from podium.settings.files import load_selection_config
    from podium.streams import keys
    from podium.streams.connection import connect
    from podium.streams.policy import check_redis_policy
    from podium.tracking.tracker import MlflowTracking

    log_at_least("podium.aggregator", logging.INFO)  # one line per publish and per rebuild
    settings = PodiumSettings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with podium_errors():
        cfg = load_selection_config(config, settings.config_dir)
        tracking = _wait_for_store(lambda: MlflowTracking.from_settings(settings, cfg.objective.metric), stop)
        if tracking is None:
            return
        reporter, hooks = None, []
        if settings.report_dir is not None:
            from podium.aggregator.report import NewBestReporter

            reporter = NewBestReporter(tracking, cfg, settings.report_dir, settings.report_every_s)
            hooks.append(reporter)
        if settings.champion_model:
            from podium.aggregator.alias import ChampionAlias

            hooks.append(ChampionAlias(tracking.client, settings.champion_model))
        client = connect(settings.redis_url)
        try:
            check_redis_policy(client, settings.redis_url, settings.accept_redis_eviction, "podium aggregator")
        except redis.RedisError as exc:  # not up yet: the aggregator waits for it, as it does after an outage
            logging.getLogger("podium.aggregator").warning("Redis is not reachable yet (%s).", exc)
        agg = Aggregator(
            client,
            tracking,
            cfg,
            name or f"{socket.gethostname()}-{os.getpid()}",
            on_new_best=lambda sel: [hook(sel) for hook in hooks],
            clock=Clock(int(settings.max_clock_skew_s * 1000), settings.max_benchmark_s * 1000),
        )
    from podium.monitoring import prometheus

    prometheus.serve(settings.metrics_port)
    console.print(
        f"podium aggregator: {keys.BENCHMARKS_STREAM} -> {keys.BEST_UPDATES_STREAM} and "
        f"podium:best:<study> on {redact_url(settings.redis_url)}",
        highlight=False,
    )
    try:
        agg.run(stop, leader_ttl_ms=settings.lock_ttl_ms)
    finally:
        if reporter is not None:
            reporter.close()


def _wait_for_store(open_store: Callable[[], MlflowTracking], stop: threading.Event) -> MlflowTracking | None:
    """Open the MLflow store, waiting while it is locked (as the aggregator waits for Redis); None when
    stopped meanwhile. Configuration errors (a bad URI, no store) are not waited for."""
    from podium.tracking.tracker import StoreUnavailable

    waits = (1.0, 2.0, 5.0, 10.0, 30.0)
    attempt = 0
    while True:
        try:
            return open_store()
        except StoreUnavailable as exc:
            wait = waits[min(attempt, len(waits) - 1)]
            attempt += 1
            log = logging.getLogger("podium.aggregator")
            log.warning("MLflow store not available (%s); retrying in %.0f s.", exc, wait)
            if stop.wait(wait):
                return None


def enqueue(
    run_id: Annotated[str | None, typer.Option(help="Benchmark this trial/refit run")] = None,
    study: Annotated[str | None, typer.Option(help="Every champion of this study_key_hash (or a 6+ prefix)")] = None,
    config: Annotated[Path | None, typer.Option(help="benchmark.yaml")] = None,
    target: Annotated[str | None, typer.Option(help="Override benchmarking.target (the queue)")] = None,
) -> None:
    """Send benchmark requests to the workers (one run, or every champion of a study)."""
    from podium.core.safety import require_safe
    from podium.settings.env import PodiumSettings
    from podium.settings.files import load_benchmark_config

    if (run_id is None) == (study is None):
        fail("give exactly one of --run-id and --study")
    with podium_errors():  # bad input is refused before anything is contacted
        require_safe(run_id or study, "--run-id" if run_id else "--study")
    settings = PodiumSettings()
    with podium_errors():
        from podium.broker.app import create_app
        from podium.producers.enqueue import enqueue_benchmark
        from podium.tracking.tracker import MlflowTracking

        cfg = load_benchmark_config(config, settings.config_dir).with_overrides(target=target)
        redis_or_fail(settings.redis_url, "enqueue benchmark requests")
        tracking = MlflowTracking.from_settings(settings)
        champions = [tracking.champion(run_id)] if run_id else study_champions(tracking, study)
        if not champions:
            fail(f"no FINISHED trial or refit runs for study {study}", EXIT_NOTHING)
        app = create_app(settings)
        sent = [enqueue_benchmark(app, c, cfg) for c in champions]
    _print_sent(sent)


def backfill(
    study: Annotated[str | None, typer.Option(help="Only this study_key_hash (or a unique 6+ prefix)")] = None,
    config: Annotated[Path | None, typer.Option(help="benchmark.yaml")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what is missing")] = False,
) -> None:
    """Enqueue a benchmark for every champion that has none under the current config (by benchmark_key)."""
    from podium.settings.env import PodiumSettings
    from podium.settings.files import load_benchmark_config

    settings = PodiumSettings()
    with podium_errors():
        from podium.broker.app import create_app
        from podium.producers.backfill import filter_missing_benchmarks
        from podium.producers.enqueue import enqueue_benchmark
        from podium.tracking.tracker import MlflowTracking

        cfg = load_benchmark_config(config, settings.config_dir)
        tracking = MlflowTracking.from_settings(settings)
        if not dry_run:  # backfilling is when legacy runs turn up: workers look for them again
            from podium.streams.connection import connect
            from podium.streams.legacy import bump_epoch

            bump_epoch(connect(settings.redis_url), "podium backfill")
        champions = study_champions(tracking, study)
        missing = filter_missing_benchmarks(champions, cfg, tracking)
        console.print(f"{len(missing)} of {len(champions)} champions have no benchmark under this config.")
        if dry_run or not missing:
            for item in missing:
                console.print(f"  {item.champion.run_id}  trial {item.champion.trial_key_hash[:12]}")
            return
        app = create_app(settings)
        sent = [enqueue_benchmark(app, item.champion, cfg) for item in missing]
    _print_sent(sent)


def study_champions(tracking: MlflowTracking, study: str | None) -> list[Champion]:
    """Every champion, or those of the study that ``study`` (a hash or a unique prefix of one) names."""
    from podium.core.prefixes import resolve

    champions = tracking.load_champions(tracking.experiment_ids())
    if study is None:
        return champions
    chosen = resolve(study, {c.study_key_hash for c in champions}, "study")
    return [c for c in champions if c.study_key_hash == chosen]


def _print_sent(sent: list[Enqueued]) -> None:
    table = Table(title=f"{len(sent)} benchmark request(s) enqueued")
    for col in ("benchmark_key", "queue", "task id"):
        table.add_column(col)
    for e in sent:
        table.add_row(e.benchmark_key[:16] + "…", e.queue, e.task_id)
    console.print(table)


def sweep_cmd(
    benchmark_key: Annotated[str | None, typer.Option(help="Only the runs of this key")] = None,
) -> None:
    """End benchmark runs left RUNNING by killed workers: FINISHED if their fenced commit went through,
    else KILLED with the reason. Runs whose worker still holds the lock are left alone."""
    from podium.settings.env import PodiumSettings
    from podium.streams.connection import connect
    from podium.tracking.tracker import MlflowTracking
    from podium.workers.sweeper import sweep

    settings = PodiumSettings()
    with podium_errors():
        verdicts = sweep(MlflowTracking.from_settings(settings), connect(settings.redis_url), benchmark_key)
    acted = {run: v for run, v in verdicts.items() if v.action != "leave"}
    console.print(f"{len(verdicts)} RUNNING benchmark run(s); {len(acted)} ended.")
    for run, v in acted.items():
        console.print(f"  {run}: {v.action} ({v.reason})")


def forget(
    study: Annotated[str, typer.Option(help="The study_key_hash (or a 6+ character prefix of a published one)")],
    yes: Annotated[bool, typer.Option("--yes", help="Remove without asking")] = False,
) -> None:
    """Remove a study's best-model keys from Redis (its sequence counter and latest values), e.g. after the
    study was deleted from MLflow. The history stream keeps its past updates; MLflow is not touched. A
    running aggregator publishes the study again if MLflow still holds it."""
    from podium.core.prefixes import resolve
    from podium.settings.env import PodiumSettings
    from podium.streams.retention import forget_study, study_keys
    from podium.streams.subscriber import published_studies

    settings = PodiumSettings()
    client = redis_or_fail(settings.redis_url, "forget a study")
    with podium_errors():
        full = resolve(study, published_studies(client))
        found = study_keys(client, full)
    if not found:
        console.print(f"Nothing to remove for study {full}.", highlight=False)
        return
    console.print(f"Study {full}: " + ", ".join(found), highlight=False)
    if not yes and not typer.confirm(f"Remove these {len(found)} key(s)?"):
        raise typer.Exit(1)
    removed = forget_study(client, full)
    console.print(f"Removed {len(removed)} key(s).")
