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

from podium.cli.common import (
    EXIT_FAILED,
    EXIT_NOTHING,
    RedisUrlOption,
    TrackingUriOption,
    console,
    fail,
    log_at_least,
    podium_errors,
    redis_or_fail,
    settings_for,
)

if TYPE_CHECKING:
    from podium.core.selection import Selection
    from podium.producers.backfill import Refusal
    from podium.producers.enqueue import Enqueued
    from podium.settings.env import PodiumSettings
    from podium.tracking.plain_runs import Adopted
    from podium.tracking.tracker import MlflowTracking


def worker(
    target: Annotated[str, typer.Option(help="Worker pool: consumes queue podium.<target>")] = "cpu",
    concurrency: Annotated[int, typer.Option(help="Benchmarks at once (1 per GPU)")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    triton_url: Annotated[
        str | None, typer.Option(help="This worker's Triton, HOST:PORT (HTTP or gRPC port) (env PODIUM_TRITON_URL)")
    ] = None,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Run a Celery worker for one target (e.g. cpu, gpu-h200). Same as
    `celery -A podium.workers worker -Q podium.<target> -c 1 --prefetch-multiplier 1 --without-mingle`."""
    from podium.coordination import keys
    from podium.settings.env import redact_url

    if triton_url:
        os.environ["PODIUM_TRITON_URL"] = triton_url  # the worker's processes read their settings again
    settings = settings_for(tracking_uri, redis_url)
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
            # no start-up sync with other workers (a second's wait for replies): podium keeps what workers share
            # in Redis (locks, done markers, stop marks), not in Celery's revoked lists
            "--without-mingle",
        ]
    )


def aggregator(
    name: Annotated[str | None, typer.Option(help="Consumer name in the group (default host-pid)")] = None,
    config: Annotated[Path | None, typer.Option(help="best_model_selection.yaml")] = None,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
    take_over: Annotated[
        bool,
        typer.Option(
            "--take-over",
            help="Publish studies whose channel another selection config owns, switching them to this one "
            "(each switch is published with reason take_over); without it such studies are left as they are",
        ),
    ] = False,
) -> None:
    """Consume benchmark results, keep rolling aggregates and publish the best model of each study."""
    import redis

    from podium.aggregator.service import Aggregator
    from podium.coordination import keys
    from podium.coordination.connection import connect
    from podium.coordination.policy import EvictionGuard, check_redis_policy
    from podium.core.verification import SkewBounds
    from podium.settings.env import redact_url
    from podium.settings.files import load_selection_config
    from podium.tracking.tracker import MlflowTracking

    log_at_least("podium.aggregator", logging.INFO)  # one line per publish and per rebuild
    settings = settings_for(tracking_uri, redis_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with podium_errors():
        cfg = load_selection_config(config, settings.config_dir)
        tracking = _wait_for_store(lambda: MlflowTracking.from_settings(settings, cfg.objective.metric), stop)
        if tracking is None:
            return
        reporter = None
        hooks: list[Callable[[Selection], object]] = []
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
        consumer = name or f"{socket.gethostname()}-{os.getpid()}"
        agg = Aggregator(
            client,
            tracking,
            cfg,
            consumer,
            on_new_best=lambda sel: [hook(sel) for hook in hooks],
            skew=SkewBounds(int(settings.max_clock_skew_s * 1000), settings.max_benchmark_s * 1000),
            eviction=EvictionGuard(
                client, f"podium aggregator {consumer}", settings.accept_redis_eviction, settings.redis_policy_check_s
            ),
            take_over=take_over,
        )
    from podium.monitoring import prometheus

    prometheus.serve(settings.metrics_port)
    console.print(
        f"podium aggregator: {keys.BENCHMARKS_STREAM} -> {keys.BEST_UPDATES_STREAM} and "
        f"podium:best:<study> on {redact_url(settings.redis_url)}, MLflow store {tracking.uri}",
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
    from podium.errors import StoreNotReady, StoreUnavailable

    waits = (1.0, 2.0, 5.0, 10.0, 30.0)
    attempt = 0
    said = ""
    log = logging.getLogger("podium.aggregator")
    while True:
        try:
            return open_store()
        except StoreNotReady as exc:  # not created yet by training: one line, then look again every second
            if not said:  # one line for the whole wait (the reason moves on as the store is being made)
                said = str(exc)
                log.warning("%s; nothing is published until it is.", exc)
            if stop.wait(1.0):
                return None
        except StoreUnavailable as exc:
            wait = waits[min(attempt, len(waits) - 1)]
            attempt += 1
            log.warning("MLflow store not available (%s); retrying in %.0f s.", exc, wait)
            if stop.wait(wait):
                return None


def enqueue(
    run_id: Annotated[str | None, typer.Option(help="Benchmark this trial/refit run")] = None,
    study: Annotated[str | None, typer.Option(help="Every champion of this study_key_hash (or a 6+ prefix)")] = None,
    config: Annotated[Path | None, typer.Option(help="benchmark.yaml")] = None,
    target: Annotated[str | None, typer.Option(help="Override benchmarking.target (the queue)")] = None,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Send benchmark requests to the workers (one run, or every champion of a study)."""
    from podium.core.safety import require_safe
    from podium.settings.files import load_benchmark_config

    if (run_id is None) == (study is None):
        fail("give exactly one of --run-id and --study")
    with podium_errors():  # bad input is refused before anything is contacted
        require_safe(run_id or study, "--run-id" if run_id else "--study")
    settings = settings_for(tracking_uri, redis_url)
    with podium_errors():
        from podium.broker.app import create_app
        from podium.producers.enqueue import enqueue_benchmark
        from podium.tracking.tracker import MlflowTracking

        cfg = load_benchmark_config(config, settings.config_dir).with_overrides(target=target)
        redis_or_fail(settings.redis_url, "enqueue benchmark requests")
        tracking = MlflowTracking.from_settings(settings, objective_of(settings))
        adopted = study_adopted(tracking, study, cfg.model.artifact_path, run_id)
        paths = {a.champion.run_id: a.artifact_path for a in adopted}
        champions = [a.champion for a in adopted]
        if not champions:
            fail(f"no FINISHED trial or refit runs for study {study}", EXIT_NOTHING)
        app = create_app(settings)
        store = tracking.store_ref()
        sent = [enqueue_benchmark(app, c, cfg, store=store, artifact_path=paths.get(c.run_id)) for c in champions]
    _print_sent(sent, store.uri)


def backfill(
    study: Annotated[str | None, typer.Option(help="Only this study_key_hash (or a unique 6+ prefix)")] = None,
    config: Annotated[Path | None, typer.Option(help="benchmark.yaml")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what is missing")] = False,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
    sent: Annotated[
        bool,
        typer.Option(
            "--sent",
            help="Instead: re-send the requests of the sent log (podium:sent, last 24 h) that no answer, queue or "
            "worker accounts for (a queue that lost messages); a FLUSHALL takes the log too",
        ),
    ] = False,
    sent_older_than: Annotated[
        float, typer.Option(help="With --sent: only requests sent at least this many seconds ago")
    ] = 60.0,
) -> None:
    """Enqueue a benchmark for every champion that has none under the current config (by benchmark_key).
    Champions that cannot be sent (their runs' tags break a rule) are listed; then the exit status is 1."""
    from podium.settings.files import load_benchmark_config

    settings = settings_for(tracking_uri, redis_url)
    if sent:
        _resend_lost(settings, sent_older_than)
        return
    with podium_errors():
        from podium.broker.app import create_app
        from podium.producers.backfill import Refusal, filter_missing_benchmarks, send_missing
        from podium.producers.enqueue import enqueue_benchmark
        from podium.tracking.tracker import MlflowTracking

        cfg = load_benchmark_config(config, settings.config_dir)
        tracking = MlflowTracking.from_settings(settings, objective_of(settings))
        if not dry_run:  # backfilling is when legacy runs turn up: workers look for them again
            from podium.coordination.connection import connect
            from podium.coordination.legacy import bump_epoch

            bump_epoch(connect(settings.redis_url), "podium backfill")
        adopted = study_adopted(tracking, study, cfg.model.artifact_path)
        refused = [Refusal.of_run(r) for r in tracking.refused.values()]  # training runs skipped as they were read
        paths = {a.champion.run_id: a.artifact_path for a in adopted}
        missing = filter_missing_benchmarks([a.champion for a in adopted], cfg, tracking)
        console.print(f"{len(missing)} of {len(adopted)} champions have no benchmark under this config.")
        if dry_run or not missing:
            for item in missing:
                console.print(f"  {item.champion.run_id}  trial {item.champion.trial_key_hash[:12]}")
            _exit_if_refused(refused, sent=None)
            return
        app = create_app(settings)
        store = tracking.store_ref()
        enqueued, not_sent = send_missing(
            missing,
            lambda item: enqueue_benchmark(
                app, item.champion, cfg, store=store, artifact_path=paths.get(item.champion.run_id)
            ),
        )
    _print_sent(enqueued, store.uri)
    _exit_if_refused(refused + not_sent, sent=len(enqueued))


def _resend_lost(settings: PodiumSettings, min_age_s: float) -> None:
    """``backfill --sent``: re-send what the queue lost, from the producers' sent log."""
    from podium.broker.app import create_app
    from podium.coordination import keys
    from podium.producers.resend import resend_lost

    client = redis_or_fail(settings.redis_url, "read the sent log")
    with podium_errors():
        report = resend_lost(client, create_app(settings), min_age_s)
    console.print(
        f"{report.noted} request(s) in {keys.SENT_STREAM} from the last 24 h: {report.accounted} answered, queued, "
        f"in flight or sent less than {min_age_s:g} s ago; {len(report.sent)} lost and sent again.",
        highlight=False,
    )
    if report.noted == 0:
        console.print(
            f"{keys.SENT_STREAM} is empty: nothing was sent in the last 24 h, or Redis lost it too (FLUSHALL, a "
            "fresh replica); podium backfill (without --sent) re-sends every champion with no benchmark under "
            "the current config.",
            highlight=False,
        )
    if report.sent:
        _print_sent(report.sent, "named in each request")
    for entry_id, why in report.refused:
        console.print(f"  entry {entry_id} not sent: {why}", highlight=False, markup=False)
    if report.refused:
        fail(f"{len(report.refused)} entry(ies) of {keys.SENT_STREAM} refused (listed above)", EXIT_FAILED)


def _exit_if_refused(refused: list[Refusal], sent: int | None) -> None:
    """List the champions backfill could not send, and exit 1 when there are any."""
    if not refused:
        return
    console.print(f"{len(refused)} run(s) refused, not sent:", highlight=False)
    for r in refused:
        console.print(f"  {r.run_id}: {r.why}", highlight=False, markup=False)
    done = "" if sent is None else f"the other {sent} were sent; "
    fail(
        f"{len(refused)} run(s) refused (listed above); {done}fix their tags in MLflow and run backfill again",
        EXIT_FAILED,
    )


def objective_of(settings: PodiumSettings) -> str:
    """The objective metric of ``best_model_selection.yaml`` (a plain run without it is refused at enqueue)."""
    from podium.settings.files import load_selection_config

    return load_selection_config(None, settings.config_dir).objective.metric


def study_adopted(
    tracking: MlflowTracking, study: str | None, artifact_path: str | None, run_id: str | None = None
) -> list[Adopted]:
    """The run given (tagged or plain), or every champion of the study (a hash or a unique prefix; None: all):
    the tagged ones and the plain MLflow runs that can be benchmarked."""
    from podium.core.plain import looks_like_run_id
    from podium.core.prefixes import resolve
    from podium.tracking.plain_runs import Adopted, adopt, plain_champions

    if run_id is not None:
        return [adopt(tracking, run_id, artifact_path=artifact_path)]
    ids = tracking.experiment_ids()
    # plain runs a benchmark measured are among load_champions' too: they come once, from plain_champions
    tagged = [
        Adopted(c, artifact_path) for c in tracking.load_champions(ids) if not looks_like_run_id(c.trial_key_hash)
    ]
    every = tagged + plain_champions(tracking, ids, artifact_path)
    if study is None:
        return every
    chosen = resolve(study, {a.champion.study_key_hash for a in every}, "study")
    return [a for a in every if a.champion.study_key_hash == chosen]


def _print_sent(sent: list[Enqueued], store: str) -> None:
    table = Table(title=f"{len(sent)} benchmark request(s) enqueued, runs read from the MLflow store {store}")
    for col in ("benchmark_key", "queue", "request id", "task id"):
        table.add_column(col)
    for e in sent:
        table.add_row(e.benchmark_key[:16] + "…", e.queue, e.request_id, e.task_id)
    console.print(table)


def sweep_cmd(
    benchmark_key: Annotated[str | None, typer.Option(help="Only the runs of this key")] = None,
    tracking_uri: TrackingUriOption = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """End benchmark runs left RUNNING by killed workers: FINISHED if their fenced commit went through,
    else KILLED with the reason. Runs whose worker still holds the lock are left alone."""
    from podium.coordination.connection import connect
    from podium.tracking.tracker import MlflowTracking
    from podium.workers.sweeper import sweep

    settings = settings_for(tracking_uri, redis_url)
    with podium_errors():
        verdicts = sweep(MlflowTracking.from_settings(settings), connect(settings.redis_url), benchmark_key)
    acted = {run: v for run, v in verdicts.items() if v.action != "leave"}
    console.print(f"{len(verdicts)} RUNNING benchmark run(s); {len(acted)} ended.")
    for run, v in acted.items():
        console.print(f"  {run}: {v.action} ({v.reason})")


def forget(
    study: Annotated[str, typer.Option(help="The study_key_hash (or a 6+ character prefix of a published one)")],
    yes: Annotated[bool, typer.Option("--yes", help="Remove without asking")] = False,
    redis_url: RedisUrlOption = None,
) -> None:
    """Remove a study's best-model keys from Redis (its sequence counter and latest values), e.g. after the
    study was deleted from MLflow. The history stream keeps its past updates; MLflow is not touched. A
    running aggregator publishes the study again if MLflow still holds it."""
    from podium.coordination.retention import forget_study, study_keys
    from podium.coordination.subscriber import published_studies
    from podium.core.prefixes import resolve

    settings = settings_for(redis_url=redis_url)
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
