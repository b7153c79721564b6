"""The worker's Celery app: the broker's app with the benchmark task registered, start-up checks, and
connections built when each worker process starts (so its first request is served as fast as its tenth)."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery
from celery.signals import task_rejected, task_unknown, worker_init, worker_process_init

from podium.broker.app import WORKER_RESULT_RETRY, create_app, verify_visibility_timeout
from podium.coordination import keys
from podium.coordination.connection import connect
from podium.coordination.dead_letters import dead_letter
from podium.coordination.policy import check_redis_policy
from podium.core.backend_registry import backend_spec
from podium.errors import ConfigError
from podium.settings.env import PodiumSettings
from podium.settings.files import load_benchmark_config
from podium.workers.ready import ProcessStart
from podium.workers.tasks import register

log = logging.getLogger(__name__)

#: How long a pool process may take from its fork to "up" (the runtimes' warm-up happens in between).
WARM_UP_TIMEOUT_S = 180.0


def check_worker_settings(settings: PodiumSettings) -> None:
    """Refuse to start a worker that could serve none of its own requests."""
    cfg = load_benchmark_config(None, settings.config_dir).benchmarking
    if backend_spec(cfg.backend).server and not settings.triton_url:
        raise ConfigError(
            f"{settings.config_dir}/benchmark.yaml says backend: {cfg.backend} but this worker has no inference "
            "server: set PODIUM_TRITON_URL=HOST:PORT or pass `podium worker --triton-url HOST:PORT`"
        )


def check_worker_redis(settings: PodiumSettings) -> None:
    """Refuse to start on a Redis that evicts keys (queued requests would vanish); warn when AOF is off."""
    client = connect(settings.redis_url)
    try:
        check_redis_policy(client, settings.redis_url, settings.accept_redis_eviction, "podium worker")
    finally:
        client.close()


class RefusedMessages:
    """Messages the worker's consumer refuses before any task runs (an unknown task name, a message that
    is not a task): Celery logs and drops them; podium dead-letters them too, with the reason."""

    def __init__(self, app: Celery, settings: PodiumSettings):
        self.app = app
        self.settings = settings
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = connect(self.settings.redis_url)
        return self._client

    def unknown_task(self, sender: Any = None, message: Any = None, name: str | None = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            known = keys.BENCHMARK_TASK
            self._park(message, f"unknown task {name!r} (this worker runs {known}); Celery dropped the message")

    def rejected(self, sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "not a task message"
            self._park(message, f"refused by the worker before running ({why})")

    def _park(self, message: Any, error: str) -> None:
        body = getattr(message, "body", b"")
        text = body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else str(body)
        headers = getattr(message, "headers", None) or {}
        payload = json.dumps({"headers": {k: str(v)[:200] for k, v in headers.items()}, "body": text[:4096]})
        dead_letter(self._redis(), "request", payload, error)


def create_worker_app(settings: PodiumSettings) -> Celery:
    app = create_app(settings)
    app.conf.broker_transport = "podium.broker.transport:Transport"  # undecodable queue items: dead letters
    app.backend_cls = "podium.broker.results:RedisBackend"  # task states stored on a full Redis wait for memory
    app.conf.result_backend_transport_options = {
        **app.conf.result_backend_transport_options,
        "retry_policy": WORKER_RESULT_RETRY,
    }
    register(app)
    refused = RefusedMessages(app, settings)
    task_unknown.connect(refused.unknown_task, weak=False)
    task_rejected.connect(refused.rejected, weak=False)

    def check_on_start(sender: Any = None, **_: Any) -> None:  # also for plain `celery -A podium.workers worker`
        if getattr(sender, "app", None) is app:
            check_worker_settings(settings)
            check_worker_redis(settings)
            verify_visibility_timeout(app)

    worker_init.connect(check_on_start, weak=False)
    worker_process_init.connect(ProcessStart(app, settings).run, weak=False)
    # the warm-up runs before a pool process says it is up: give it longer than Celery's 4 s to do so
    app.conf.worker_proc_alive_timeout = WARM_UP_TIMEOUT_S
    return app
