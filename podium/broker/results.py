"""Celery's Redis result backend, for workers, with one change: a task state stored while Redis is full waits
for memory instead of failing the task.

Celery stores ``STARTED`` before a task's body runs (``task_track_started``) and its outcome after; Redis refuses
both when memory is full, and Celery then fails the task "outside body", tries to store that FAILURE (refused
too) and acknowledges the message: the request was gone, with no retry, no dead letter and no result (seen in
the OOM chaos test). Workers name this class as their ``backend_cls`` (:func:`podium.workers.app.create_worker_app`).
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend as CeleryRedisBackend

from podium.broker.transport import when_memory_frees


class RedisBackend(CeleryRedisBackend):
    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any):
        super().__init__(app=app, url=url or app.conf.result_backend, **kwargs)

    def _set(self, key: str, value: Any, expires: Any = None) -> None:
        when_memory_frees(f"store {key}", lambda: super(RedisBackend, self)._set(key, value, expires))
