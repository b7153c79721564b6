"""The Celery task: parse, count the attempt, call :func:`execute`, map outcomes to retries or dead letters.

Attempts are counted in Redis per request, so a task that kills its worker (OOM, ``kill -9``) and is
redelivered by ``task_reject_on_worker_lost`` gives up after ``max_attempts`` instead of looping.

Nothing is dropped on an infrastructure error: building the connections, counting the attempt and
dead-lettering are inside the retry path; a retry that cannot be published (Redis away or out of memory)
is not turned into a rejection (Celery's default, which acks and loses the message): the task keeps its
message unacknowledged, waits and tries again in this process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
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
#: Waits between tries when the infrastructure (Redis, MLflow) fails, doubling up to the last.
INFRA_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: How a retry is published: kombu reconnects this often before podium falls back to waiting in-process.
PUBLISH_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}

_deps_lock = threading.Lock()
_deps: dict[int, WorkerDeps] = {}


class RetryLater(Exception):
    """Run this request again after ``countdown`` seconds."""

    def __init__(self, countdown: float, why: str):
        super().__init__(why)
        self.countdown = countdown


def register(app: Celery) -> None:
    @app.task(name=keys.BENCHMARK_TASK, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
    def benchmark(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return run_task(self, args, kwargs, lambda: worker_deps(self.app))


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


def run_task(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], make_deps: Callable[[], WorkerDeps]
) -> dict[str, Any]:
    """Handle one message until it is answered, retried through the broker, or dead-lettered."""
    infra_failures = 0
    while True:
        try:
            with prometheus.BENCHMARK_SECONDS.time():
                outcome = _run_task(task, args, kwargs, make_deps)
            prometheus.BENCHMARKS.labels(outcome.get("status", "unknown")).inc()
            return outcome
        except RetryLater as later:
            try:
                raise task.retry(countdown=later.countdown, retry=True, retry_policy=PUBLISH_RETRY) from None
            except Reject as exc:  # the retry could not be published: keep this message, wait here
                wait = INFRA_RETRY_S[min(infra_failures, len(INFRA_RETRY_S) - 1)]
                infra_failures += 1
                log.warning(
                    "Could not publish the retry of task %s (%s; it was: %s); keeping the message and trying "
                    "again in this worker in %.1f s.",
                    task.request.id,
                    exc.reason,
                    later,
                    wait,
                )
                time.sleep(max(wait, later.countdown))


def _run_task(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], make_deps: Callable[[], WorkerDeps]
) -> dict[str, Any]:
    settings = task.app.conf.podium_settings
    try:
        deps = make_deps()
    except Exception as exc:  # the store or Redis is away: nothing to count the attempt in yet, wait for them
        raise RetryLater(settings.retry_backoff_s, f"cannot build this worker's connections: {_error(exc)}") from exc
    payload: Any = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
    try:
        request = request_of(args, kwargs)
    except MessageError as exc:
        _park(deps, payload, str(exc), settings)
        return {"status": "rejected", "error": str(exc)}
    refused = refusal(request, deps)
    if refused is not None:
        _park(deps, payload, refused, settings)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": refused}
    counter = keys.attempts(request.request_id)
    try:
        attempt = int(deps.redis.incr(counter))
        deps.redis.expire(counter, ATTEMPTS_TTL_S)
    except redis.RedisError as exc:
        raise RetryLater(settings.retry_backoff_s, f"cannot count the attempt: {_error(exc)}") from exc
    if attempt > settings.max_attempts:
        error = f"gave up after {settings.max_attempts} attempts (the last one crashed its worker or failed)"
        _park(deps, payload, error, settings)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": error}
    try:
        outcome = execute(request, deps)
    except LockBusy:
        prometheus.LOCK_WAITS.inc()
        _uncount(deps, counter)  # waiting for another worker is not an attempt
        raise RetryLater(random.uniform(*BUSY_RETRY_S), "the benchmark is locked by another worker") from None
    except LockLost as exc:
        log.warning("Request %s: %s; retrying.", request.request_id, exc)
        raise RetryLater(random.uniform(*BUSY_RETRY_S), str(exc)) from None
    except (Exception, SoftTimeLimitExceeded) as exc:
        error = _error(exc)
        if attempt >= settings.max_attempts:
            _park(deps, payload, f"attempt {attempt}/{settings.max_attempts}: {error}", settings)
            _forget(deps, counter)
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
        raise RetryLater(delay, error) from None
    _forget(deps, counter)
    return outcome.as_dict()


def request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> BenchmarkRequest:
    """The verified request a task message carries; ``MessageError`` for anything else."""
    if len(args) != 1 or kwargs:
        raise MessageError(
            f"task {keys.BENCHMARK_TASK} takes one request object; got {len(args)} positional and "
            f"{len(kwargs)} keyword argument(s)"
        )
    request = decode(BenchmarkRequest, args[0])
    request.verified_identity()
    return request


def _park(deps: WorkerDeps, payload: Any, error: str, settings: Any) -> None:
    """Dead-letter a message; when Redis cannot take it, keep the message and try again later."""
    if dead_letter(deps.redis, "request", payload, error) is None:
        raise RetryLater(settings.retry_backoff_s, f"cannot dead-letter ({error})")


def _uncount(deps: WorkerDeps, counter: str) -> None:
    try:
        deps.redis.decr(counter)
    except redis.RedisError as exc:
        log.warning("Could not uncount an attempt (%s); the request has one attempt less.", exc)


def _forget(deps: WorkerDeps, counter: str) -> None:
    try:
        deps.redis.delete(counter)
    except redis.RedisError as exc:  # it expires with its TTL
        log.warning("Could not delete the attempt counter %s (%s).", counter, exc)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
