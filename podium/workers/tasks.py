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

from podium.coordination import keys
from podium.coordination.dead_letters import dead_letter
from podium.coordination.policy import EvictionGuard
from podium.core.messages import BenchmarkRequest, decode
from podium.errors import LockBusy, LockLost, MessageError, RetryLater, TrackingError
from podium.monitoring import prometheus
from podium.workers import tune_task
from podium.workers.endings import install as install_endings
from podium.workers.execute import WorkerDeps, execute, refusal
from podium.workers.holds import hold, release_hold
from podium.workers.outage import OutageBudget, outage_of
from podium.workers.sweeper import end_recorded
from podium.workers.warmup import runtimes_loaded

log = logging.getLogger(__name__)

#: Attempt counters expire after this (a request forgotten by everyone else is forgotten here too).
ATTEMPTS_TTL_S = 7 * 24 * 3600
#: A busy lock is retried after this many seconds (jittered), until the holder finishes.
BUSY_RETRY_S = (0.5, 2.0)
#: Waits between tries when the infrastructure (Redis, MLflow) fails, growing to the last, which then repeats.
INFRA_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: How a retry is published: kombu reconnects this often before podium falls back to waiting in-process.
PUBLISH_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}

_deps_lock = threading.Lock()
_deps: dict[int, WorkerDeps] = {}
_guards: dict[int, EvictionGuard] = {}


def register(app: Celery) -> None:
    @app.task(
        name=keys.BENCHMARK_TASK,
        bind=True,
        max_retries=None,
        acks_late=True,
        reject_on_worker_lost=True,
        acks_on_timeout=False,  # a hard time limit podium could not handle: requeued, never dropped
        Request="podium.workers.endings:BenchmarkRequest",  # every other ending: podium.workers.endings
    )
    def benchmark(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        before = runtimes_loaded()
        try:
            return run_task(self, args, kwargs, lambda: worker_deps(self.app))
        finally:
            if late := sorted(runtimes_loaded() - before):
                log.warning("%s was imported inside a task: this worker's warm-up missed it.", ", ".join(late))

    install_endings(app)
    tune_task.register(app)


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
                wait = max(INFRA_RETRY_S[min(infra_failures, len(INFRA_RETRY_S) - 1)], later.countdown)
                infra_failures += 1
                log.warning(
                    "Could not publish the retry of task %s (%s; it was: %s); keeping the message and trying "
                    "again in this worker in %.1f s.",
                    task.request.id,
                    exc.reason,
                    later,
                    wait,
                )
                time.sleep(wait)


def _run_task(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], make_deps: Callable[[], WorkerDeps]
) -> dict[str, Any]:
    settings = task.app.conf.podium_settings
    try:
        deps = make_deps()
    except Exception as exc:  # the store or Redis is away: nothing to count the attempt in yet, wait for them
        raise RetryLater(settings.retry_backoff_s, f"cannot build this worker's connections: {_error(exc)}") from exc
    _wait_while_redis_evicts(task.app, deps, settings)
    _end_recorded_runs(deps)
    payload: Any = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
    try:
        request = request_of(args, kwargs)
    except MessageError as exc:
        _park(deps, payload, str(exc), settings)
        return {"status": "rejected", "error": str(exc)}
    refused = _refusal(request, deps, settings)
    if refused is not None:
        _park(deps, payload, refused, settings)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": refused}
    counter = keys.attempts(request.request_id)
    try:
        attempt = int(deps.redis.incr(counter))
        deps.redis.expire(counter, ATTEMPTS_TTL_S)
        # what this attempt holds, for the main process should it end outside this code (time limit, lost, stop)
        deps = hold(deps, task.request.id, request.request_id, request.benchmark_key, attempt, ATTEMPTS_TTL_S)
    except redis.RedisError as exc:
        raise RetryLater(settings.retry_backoff_s, f"cannot count the attempt: {_error(exc)}") from exc
    if attempt > settings.max_attempts:
        error = f"gave up after {settings.max_attempts} attempts (the last one crashed its worker or failed)"
        _park(deps, payload, error, settings)
        return {"status": "dead_letter", "benchmark_key": request.benchmark_key, "error": error}
    try:
        outcome = execute(request, deps)
    except LockBusy as busy:  # the key's lock, or the host's cores (CoresBusy)
        prometheus.LOCK_WAITS.inc()
        _uncount(deps, counter)  # waiting for another worker is not an attempt
        raise RetryLater(random.uniform(*BUSY_RETRY_S), str(busy)) from None
    except LockLost as exc:
        log.warning("Request %s: %s; retrying.", request.request_id, exc)
        raise RetryLater(random.uniform(*BUSY_RETRY_S), str(exc)) from None
    except (Exception, SoftTimeLimitExceeded) as exc:
        _wait_out_outage(deps, request, counter, exc, settings)  # the store or the disk failed: RetryLater
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
    finally:
        release_hold(deps.redis, task.request.id)
    _forget(deps, counter)
    _outage_over(deps, request)
    return outcome.as_dict()


def _wait_out_outage(
    deps: WorkerDeps, request: BenchmarkRequest, counter: str, exc: BaseException, settings: Any
) -> None:
    """An outage of the store or a full disk, within ``PODIUM_STORE_OUTAGE_S``: uncount the attempt and raise
    ``RetryLater`` with back-off. Returns when the failure counts as an attempt (the model's own, or too long)."""
    what = outage_of(exc)
    if what is None:
        return
    try:
        wait = OutageBudget(deps.redis, settings.store_outage_s, settings.retry_backoff_s).wait(request.request_id)
    except redis.RedisError:
        wait = settings.retry_backoff_s  # Redis is away too: wait, never count what nobody can record
    if wait is None:
        log.error(
            "Request %s has waited out %s for over PODIUM_STORE_OUTAGE_S=%g s; its failures count as attempts now.",
            request.request_id,
            what,
            settings.store_outage_s,
        )
        return
    _uncount(deps, counter)
    log.warning(
        "Request %s: %s (%s); waiting %.1f s, not counted as an attempt.", request.request_id, what, _error(exc), wait
    )
    raise RetryLater(wait, f"{what}: {_error(exc)}") from None


def _outage_over(deps: WorkerDeps, request: BenchmarkRequest) -> None:
    try:
        OutageBudget(deps.redis, 0, 0).clear(request.request_id)
    except redis.RedisError as exc:  # it expires with its TTL
        log.warning("Could not clear the outage record of request %s (%s).", request.request_id, exc)


def _end_recorded_runs(deps: WorkerDeps) -> None:
    """Runs whose task ended outside its code (time limit, lost process, stopped worker) are ended here, by the
    next task of any worker, FAILED with the reason their worker's main process recorded."""
    try:
        if deps.redis.hlen(keys.ENDINGS):
            end_recorded(deps.tracking, deps.redis)
    except (redis.RedisError, TrackingError) as exc:  # the store or Redis is away: the next task tries again
        log.warning("Could not end the runs recorded as abandoned yet (%s).", exc)


def _wait_while_redis_evicts(app: Celery, deps: WorkerDeps, settings: Any) -> None:
    """Before a request is taken: while Redis evicts (its policy changed since the worker started), the message
    waits here, unacknowledged, and this process takes no other (``EvictionGuard``: one CONFIG GET at most
    every ``PODIUM_REDIS_POLICY_CHECK_S``)."""
    guard = _guards.get(id(app))
    if guard is None:
        who = f"podium worker {deps.worker}"
        guard = EvictionGuard(deps.redis, who, settings.accept_redis_eviction, settings.redis_policy_check_s)
        _guards[id(app)] = guard
    while not guard.allows():
        time.sleep(guard.every_s)


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


def _refusal(request: BenchmarkRequest, deps: WorkerDeps, settings: Any) -> str | None:
    try:
        return refusal(request, deps)
    except TrackingError as exc:  # the store could not say who it is: an outage, not the request's fault
        raise RetryLater(settings.retry_backoff_s, f"cannot read this worker's store: {_error(exc)}") from exc


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
