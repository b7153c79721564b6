"""The worker's Celery app: the broker's app with the benchmark task registered, start-up checks, and
connections built when each worker process starts (so its first request is served as fast as its tenth)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from podium.broker.app import create_app, verify_visibility_timeout
from podium.errors import ConfigError
from podium.settings.env import PodiumSettings
from podium.settings.files import load_benchmark_config
from podium.workers.tasks import register, worker_deps

log = logging.getLogger(__name__)


def check_worker_settings(settings: PodiumSettings) -> None:
    """Refuse to start a worker that could serve none of its own requests."""
    cfg = load_benchmark_config(None, settings.config_dir).benchmarking
    if cfg.backend == "triton" and not settings.triton_url:
        raise ConfigError(
            f"{settings.config_dir}/benchmark.yaml says backend: triton but this worker has no Triton server: "
            "set PODIUM_TRITON_URL=HOST:PORT or pass `podium worker --triton-url HOST:PORT`"
        )


def create_worker_app(settings: PodiumSettings) -> Celery:
    app = create_app(settings)
    register(app)

    def check_on_start(sender: Any = None, **_: Any) -> None:  # also for plain `celery -A podium.workers worker`
        if getattr(sender, "app", None) is app:
            check_worker_settings(settings)
            verify_visibility_timeout(app)

    def prepare() -> None:
        try:
            deps = worker_deps(app)
            deps.redis.ping()  # redis-py connects on the first command: open the sockets now
            app.backend.client.ping()
            deps.tracking.benchmark_experiment_id()
        except Exception as exc:
            log.warning("Could not prepare this worker's connections at start (%s); the first task will retry.", exc)

    def warm(**_: Any) -> None:
        """In each worker process after the fork: MLflow and Redis connections made before the first task, on
        a thread (process start never blocks on a slow store; a first task waits on the same lock). A failure
        is not fatal: the task builds them again inside its retry and dead-letter path."""
        threading.Thread(target=prepare, name="podium-warm", daemon=True).start()

    worker_init.connect(check_on_start, weak=False)
    worker_process_init.connect(warm, weak=False)
    return app
