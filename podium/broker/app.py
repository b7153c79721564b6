"""The Celery app that producers send with and workers consume from, built by a function from settings
(nothing connects at import time). Workers add their task and start-up checks in :mod:`podium.workers.app`."""

from __future__ import annotations

import logging

from celery import Celery

from podium.errors import ConfigError
from podium.settings.env import PodiumSettings, redact_url
from podium.streams import keys

log = logging.getLogger(__name__)


#: How long a producer's result backend tries to reconnect before the send fails (about a second).
PRODUCER_RESULT_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}
#: A worker stores results patiently: Celery's own policy (20 tries, 1 s apart).
WORKER_RESULT_RETRY = {"max_retries": 20, "interval_start": 0, "interval_step": 1, "interval_max": 1}


def create_app(settings: PodiumSettings) -> Celery:
    if settings.visibility_timeout_s <= settings.max_benchmark_s:
        raise ConfigError(
            f"PODIUM_VISIBILITY_TIMEOUT_S={settings.visibility_timeout_s} must exceed PODIUM_MAX_BENCHMARK_S="
            f"{settings.max_benchmark_s}: Redis redelivers unacked messages after the visibility timeout, so a "
            "longer benchmark would start twice"
        )
    app = Celery("podium", broker=settings.redis_url, backend=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        # a producer facing a Redis outage gives up on the result channel quickly (Celery's default keeps
        # reconnecting for ~19 s per send); workers keep Celery's patient policy (podium.workers.app)
        result_backend_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "retry_policy": PRODUCER_RESULT_RETRY,
        },
        result_expires=24 * 3600,
        # one result backend (one Redis pool) for all threads of a process, not one per thread: a training
        # hook sends from its own thread, and a per-thread backend would leak its connections
        result_backend_thread_safe=True,
        task_default_queue=keys.queue("cpu"),
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        task_time_limit=settings.max_benchmark_s + 60,
        task_soft_time_limit=settings.max_benchmark_s,
        broker_connection_retry_on_startup=True,
    )
    app.conf.podium_settings = settings
    return app


def verify_visibility_timeout(app: Celery) -> int:
    """Read the visibility timeout the broker transport really uses; refuse to start when it is too short."""
    settings: PodiumSettings = app.conf.podium_settings
    with app.connection_for_write() as conn:
        effective = int(getattr(conn.default_channel, "visibility_timeout", 0) or 0)
    if effective <= settings.max_benchmark_s:
        raise ConfigError(
            f"the broker at {redact_url(settings.redis_url)} uses a visibility timeout of {effective} s, not above "
            f"the longest benchmark ({settings.max_benchmark_s} s): a long benchmark would be delivered twice"
        )
    log.info("Broker visibility timeout is %d s (longest benchmark %d s).", effective, settings.max_benchmark_s)
    return effective
