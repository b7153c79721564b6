"""The Celery app that producers send with and workers consume from, built by a function from settings
(nothing connects at import time). Workers add their task and start-up checks in :mod:`podium.workers.app`."""

from __future__ import annotations

import logging

from celery import Celery

from podium.coordination import keys
from podium.errors import ConfigError
from podium.settings.env import PodiumSettings, redact_url

log = logging.getLogger(__name__)


#: How long a producer's result backend tries to reconnect before the send fails (about a second).
PRODUCER_RESULT_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}
#: A worker stores results patiently: Celery's own policy (20 tries, 1 s apart).
WORKER_RESULT_RETRY = {"max_retries": 20, "interval_start": 0, "interval_step": 1, "interval_max": 1}


#: The hard time limit lies this far beyond ``PODIUM_MAX_BENCHMARK_S`` (the soft limit), at most (half the soft
#: limit when that is shorter: the soft limit cannot interrupt a model hung in native code, the hard one can).
HARD_LIMIT_MARGIN_S = 60
#: The default visibility timeout lies this far beyond the longest benchmark: the hard time limit plus the
#: longest wait of a retry held by a worker before it runs.
VISIBILITY_MARGIN_S = 300


def hard_time_limit(settings: PodiumSettings) -> int:
    return settings.max_benchmark_s + min(HARD_LIMIT_MARGIN_S, max(2, settings.max_benchmark_s // 2))


def visibility_timeout(settings: PodiumSettings) -> int:
    """``PODIUM_VISIBILITY_TIMEOUT_S``, or the longest benchmark plus a margin when unset."""
    return settings.visibility_timeout_s or settings.max_benchmark_s + VISIBILITY_MARGIN_S


def create_app(settings: PodiumSettings) -> Celery:
    visibility = visibility_timeout(settings)
    if visibility <= hard_time_limit(settings):
        raise ConfigError(
            f"PODIUM_VISIBILITY_TIMEOUT_S={visibility} must exceed the hard time limit {hard_time_limit(settings)} s "
            f"(PODIUM_MAX_BENCHMARK_S={settings.max_benchmark_s} and a margin): Redis redelivers unacked messages "
            "after the visibility timeout, so a longer benchmark would start twice; leave it unset to size it from "
            "PODIUM_MAX_BENCHMARK_S"
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
        broker_transport_options={"visibility_timeout": visibility},
        # a producer facing a Redis outage gives up on the result channel quickly (Celery's default keeps
        # reconnecting for ~19 s per send); workers keep Celery's patient policy (podium.workers.app)
        result_backend_transport_options={
            "visibility_timeout": visibility,
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
        task_time_limit=hard_time_limit(settings),
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
    if effective <= hard_time_limit(settings):
        raise ConfigError(
            f"the broker at {redact_url(settings.redis_url)} uses a visibility timeout of {effective} s, not above "
            f"the hard time limit ({hard_time_limit(settings)} s): a long benchmark would be delivered twice"
        )
    log.info("Broker visibility timeout is %d s (longest benchmark %d s).", effective, settings.max_benchmark_s)
    return effective
