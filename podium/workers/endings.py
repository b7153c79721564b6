"""Every way a benchmark task can end goes through podium's attempt / dead-letter path, in the worker's main
process, which survives its pool processes:

- the hard time limit (a model hung in native code, where the soft limit cannot reach): Celery used to store a
  failure and acknowledge the message, outside podium's handling;
- a lost pool process (OOM, ``kill -9``): Celery requeued it, leaving the run RUNNING and the lock held;
- a warm shutdown (SIGTERM, ``docker stop``): the main process stops the benchmark now, rather than be killed
  mid-benchmark after the grace period with its message unacknowledged.

For each, the main process reads what the task held (:mod:`podium.workers.holds`), releases the key's lock,
records why the run ended (the next task ends it FAILED with that reason), and retries the request (its message
back at the front of its queue) or dead-letters it once the attempts are spent, as any failure. A stopped worker
is not the request's fault: that attempt is not counted.

It also records which messages this process holds and keeps its liveness key (:mod:`podium.workers.reaper`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from typing import Any

import redis
from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Celery
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_received, worker_init, worker_shutdown, worker_shutting_down
from celery.worker import state
from celery.worker.request import Request

from podium.coordination import keys
from podium.coordination.connection import connect
from podium.coordination.dead_letters import dead_letter
from podium.workers import reaper
from podium.workers.holds import abandon, read_hold

log = logging.getLogger(__name__)

#: This main process's name in ``podium:inflight`` and its liveness key.
NODE = f"{socket.gethostname()}:{os.getpid()}"
#: The reason a warm shutdown gives the runs it stops.
WORKER_STOPPED = "worker stopped (SIGTERM or shutdown) during the benchmark"

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()
_stopping = threading.Event()


def _client(url: str) -> redis.Redis:
    with _clients_lock:
        if url not in _clients:
            _clients[url] = connect(url)
        return _clients[url]


class BenchmarkRequest(Request):
    """Celery's request of a benchmark message, as the worker's main process sees it."""

    _podium_ended = False

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if self._podium_ended:  # billiard reports the hard limit as the job's failure first: handled there
            return
        if not soft and not state.should_terminate and self._end(self._time_limit_reason(timeout), counts=True):
            return
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        if self._podium_ended:  # already handled here (timed out, or stopped with the worker)
            state.task_ready(self)
            return None
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        lost = isinstance(exc, WorkerLostError) or (
            isinstance(exc, (SystemExit, KeyboardInterrupt)) and not (self._already_cancelled or self._already_revoked)
        )
        if lost:
            stopped = _stopping.is_set()
            reason = WORKER_STOPPED if stopped else f"its worker process was lost ({type(exc).__name__}: {exc})"
            if self._end(reason, counts=not stopped):
                return None
        elif isinstance(exc, TimeLimitExceeded) and not state.should_terminate:
            timeout = exc.args[0] if exc.args else self.task.time_limit or 0
            if self._end(self._time_limit_reason(float(timeout)), counts=True):
                return None
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def acknowledge(self) -> None:
        super().acknowledge()
        self._forget()

    def reject(self, requeue: bool = False) -> None:
        super().reject(requeue)
        self._forget()

    def _forget(self) -> None:
        with contextlib.suppress(redis.RedisError, AttributeError, KeyError):
            reaper.forget(_client(self._settings.redis_url), self.message.delivery_tag)

    @property
    def _settings(self) -> Any:
        return self.task.app.conf.podium_settings

    def _time_limit_reason(self, timeout: float) -> str:
        return (
            f"TimeLimitExceeded: the benchmark ran past its hard time limit ({timeout:g} s; PODIUM_MAX_BENCHMARK_S="
            f"{self._settings.max_benchmark_s}) and its process was killed (a model that hangs or never returns)"
        )

    def stop(self, reason: str) -> bool:
        """A warm shutdown: stop this benchmark now and give its request back (not counted as an attempt)."""
        return self._end(reason, counts=False, client=connect(self._settings.redis_url))

    def _end(self, reason: str, counts: bool, client: redis.Redis | None = None) -> bool:
        """End this task outside its own code; False when podium has nothing of it (Celery's handling then)."""
        settings = self._settings
        client = client or _client(settings.redis_url)
        try:
            held = read_hold(client, self.id)
        except redis.RedisError as exc:
            log.error("Task %s ended (%s) but Redis could not be read (%s); Celery requeues it.", self.id, reason, exc)
            return False
        if not held.get("request_id"):
            return False
        self._podium_ended = True
        if self.worker_pid:  # its process must be gone before its lock is released
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.worker_pid, signal.SIGKILL)
        try:
            released = abandon(client, self.id, held, reason)
            counter = keys.attempts(held["request_id"])
            attempt = int(held.get("attempt") or 1)
            if not counts:
                client.decr(counter)
            give_up = counts and attempt >= settings.max_attempts
            if give_up:
                error = f"attempt {attempt}/{settings.max_attempts}: {reason}"
                payload = self.args[0] if len(self.args) == 1 and not self.kwargs else {"args": list(self.args)}
                if dead_letter(client, "request", payload, error) is None:
                    raise redis.RedisError("the dead letter could not be written")
                client.delete(counter)
            else:
                moved = reaper.requeue(client, self.message.delivery_tag)
        except redis.RedisError as exc:  # Celery's own handling then (kombu requeues it, or the visibility timeout)
            log.error("Task %s ended (%s); Redis failed while handling it (%s).", self.id, reason, exc)
            self._podium_ended = False
            return False
        state.task_ready(self)
        log.warning(
            "Task %s (request %s, attempt %d/%d) ended: %s; lock %s; %s.",
            self.id,
            held["request_id"],
            attempt,
            settings.max_attempts,
            reason,
            "released" if released else "not held any more",
            "dead-lettered" if give_up else ("requeued" if moved else "left to the reaper"),
        )
        if give_up:
            result = {"status": "failed", "benchmark_key": held["benchmark_key"], "error": error}
            with contextlib.suppress(Exception):
                self.task.backend.mark_as_done(self.id, result, request=self._context)
            self.acknowledge()
        else:
            self.acknowledged = True
            self._forget()
            self._let_go()
        return True

    def _let_go(self) -> None:
        """The message went back to its queue here: kombu must not restore it again at shutdown (a redelivery
        keeps its delivery tag, so that would copy another worker's delivery of it)."""
        with contextlib.suppress(AttributeError, KeyError, TypeError):
            self.message.channel.qos._delivered.pop(self.message.delivery_tag, None)


class MainProcess:
    """The worker main process's part: record each message received, keep the liveness key and run the reaper,
    stop running benchmarks on shutdown."""

    def __init__(self, app: Celery):
        self.app = app
        self.settings = app.conf.podium_settings
        self.liveness: reaper.Liveness | None = None

    def on_init(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is self.app:
            self.liveness = reaper.Liveness(connect(self.settings.redis_url), NODE, self.settings.worker_liveness_s)
            self.liveness.start()

    def on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app or request is None:
            return
        try:
            reaper.record(_client(self.settings.redis_url), request.message.delivery_tag, NODE, request.id)
        except (redis.RedisError, AttributeError) as exc:
            log.warning("Could not record message %s as held by %s (%s).", getattr(request, "id", "?"), NODE, exc)

    def on_shutting_down(self, **_: Any) -> None:
        _stopping.set()
        for request in list(state.active_requests):
            if isinstance(request, BenchmarkRequest) and not request._podium_ended and request.worker_pid:
                request.stop(WORKER_STOPPED)

    def on_shutdown(self, **_: Any) -> None:
        if self.liveness is not None:
            self.liveness.stop()


def install(app: Celery) -> MainProcess:
    """Connect the main process's handlers (they act only for ``app``)."""
    main = MainProcess(app)
    worker_init.connect(main.on_init, weak=False)
    task_received.connect(main.on_received, weak=False)
    worker_shutting_down.connect(main.on_shutting_down, weak=False)
    worker_shutdown.connect(main.on_shutdown, weak=False)
    return main
