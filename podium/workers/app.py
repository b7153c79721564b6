"""The worker's Celery app: the broker's app with the benchmark task registered and the start-up checks."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init

from podium.broker.app import create_app, verify_visibility_timeout
from podium.settings.env import PodiumSettings
from podium.workers.tasks import register


def create_worker_app(settings: PodiumSettings) -> Celery:
    app = create_app(settings)
    register(app)

    def check_on_start(sender: Any = None, **_: Any) -> None:  # also for plain `celery -A podium.workers worker`
        if getattr(sender, "app", None) is app:
            verify_visibility_timeout(app)

    worker_init.connect(check_on_start, weak=False)
    return app
