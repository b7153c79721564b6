"""The Celery task: parse, count the attempt, call :func:`execute`, map outcomes to retries or dead letters.

Attempts are counted in Redis per request, so a task that kills its worker (OOM, ``kill -9``) and is
redelivered by ``task_reject_on_worker_lost`` gives up after ``max_attempts`` instead of looping.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init

from podium.core.messages import BenchmarkRequest, MessageError, decode
from podium.monitoring import prometheus
from podium.streams import keys
from podium.streams.dead_letters import dead_letter
from podium.streams.lock import LockBusy, LockLost
from podium.workers.execute import WorkerDeps, execute, refusal

log = logging.getLogger(__name__)

#: Attempt counters expire after this (a request forgotten by everyone else is forgotten here too).
ATTEMPTS_TTL_S = 7 * 24 * 3600
#: A busy lock is retried after this many seconds (jittered), until the holder finishes.
BUSY_RETRY_S = (0.5, 2.0)

_deps_lock = threading.Lock()
_deps: dict[int, WorkerDeps] = {}


def register(app: Celery) -> None:
    @app.task(name=keys.BENCHMARK_TASK, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
    def benchmark(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return run_task(self, payload, worker_deps(self.app))


def serve_metrics(**_: Any) -> None:
    """In each worker child process (after the fork), when PODIUM_METRICS_PORT is set."""
    from podium.settings.env import PodiumSettings

    prometheus.serve(PodiumSettings().metrics_port)


worker_process_init.connect(serve_metrics, weak=False)


def worker_deps(app: Celery) -> WorkerDeps:
    """Built once per worker process, after the fork (CUDA and connections never cross a fork)."""
    with _deps_lock:
        if id(app) not in _deps:
            from podium.workers.deps import build_deps

            _deps[id(app)] = build_deps(app.conf.podium_settings)
        return _deps[id(app)]


def run_task(task: Task, payload: dict[str, Any], deps: WorkerDeps) -> dict[str, Any]:
    with prometheus.BENCHMARK_SECONDS.time():
        outcome = _run_task(task, payload, deps)
    prometheus.BENCHMARKS.labels(outcome.get("status", "unknown")).inc()
    return outcome


def _run_task(task: Task, payload: dict[str, Any], deps: WorkerDeps) -> dict[str, Any]:
    settings = task.app.conf.podium_settings
    try:
        request = decode(BenchmarkRequest, payload)
        request.verified_identity()
    except MessageError as exc:
        dead_letter(deps.redis, "request", payload, str(exc))
        return {"status": "rejected", "error": str(exc)}
    refused = refusal(request, deps)
    if refused is not None:
        dead_letter(deps.redis, "request", payload, refused)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": refused}
    counter = keys.attempts(request.request_id)
    attempt = int(deps.redis.incr(counter))
    deps.redis.expire(counter, ATTEMPTS_TTL_S)
    if attempt > settings.max_attempts:
        error = f"gave up after {settings.max_attempts} attempts (the last one crashed its worker or failed)"
        dead_letter(deps.redis, "request", payload, error)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": error}
    try:
        outcome = execute(request, deps)
    except LockBusy:
        prometheus.LOCK_WAITS.inc()
        deps.redis.decr(counter)  # waiting for another worker is not an attempt
        raise task.retry(countdown=random.uniform(*BUSY_RETRY_S)) from None
    except LockLost as exc:
        log.warning("Request %s: %s; retrying.", request.request_id, exc)
        raise task.retry(countdown=random.uniform(*BUSY_RETRY_S)) from None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= settings.max_attempts:
            dead_letter(deps.redis, "request", payload, f"attempt {attempt}/{settings.max_attempts}: {error}")
            deps.redis.delete(counter)
            return {"status": "failed", "benchmark_key": request.benchmark_key, "error": error}
        delay = settings.retry_backoff_s * 2 ** (attempt - 1)
        log.warning(
            "Request %s failed (attempt %d/%d): %s; retrying in %.1f s.",
            request.request_id,
            attempt,
            settings.max_attempts,
            error,
            delay,
        )
        raise task.retry(countdown=delay) from None
    deps.redis.delete(counter)
    return outcome.as_dict()
