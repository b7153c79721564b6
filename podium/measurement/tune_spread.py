"""``podium tune --target T``: a search's configs spread over the workers of queue ``podium.T``, each measured on
the worker's own Triton server (one per GPU), all of one step at once: the whole grid in exhaustive mode, one
dimension's values in quick mode. The worker side is :mod:`podium.workers.tune_task`; the search and the MLflow
runs stay here, as for a search on one server.

Nothing is left behind: a config not answered when the search stops (Ctrl-C, Redis gone, every worker gone) is
revoked, so no worker measures it for nobody later.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Celery
from pydantic import ValidationError

from podium.coordination import keys
from podium.coordination.connection import SEND_ERRORS, why_not_sent
from podium.core.config import BenchmarkConfig
from podium.core.messages import ServingChoice, TuneConfigRequest
from podium.core.tuning import ServingConfig, Trial
from podium.errors import BrokerUnavailable, TuningError
from podium.measurement.tune import ConfigMeasurer, ConfigOutcome

#: How long ``podium tune`` waits for the workers of its queue to answer who they are (s).
INSPECT_TIMEOUT_S = 2.0
#: How long it waits for one config's answer (its turn on a busy server, the model's fetch, the levels) (s).
CONFIG_TIMEOUT_S = 3600.0
#: How often, while it waits, it asks whether any worker of the queue is still there (s).
LIVENESS_EVERY_S = 30.0
#: How long a stopped config's mark lives: longer than any queue holds a message.
STOPPED_TTL_S = 7 * 24 * 3600


def queue_workers(app: Celery, queue: str, timeout_s: float = INSPECT_TIMEOUT_S) -> tuple[list[str], list[str]]:
    """The Celery workers consuming ``queue`` now (asked over the broker), by name: those that run tune tasks,
    and those whose podium is too old to (they would drop the configs they take)."""
    try:
        inspect = app.control.inspect(timeout=timeout_s)
        queues = inspect.active_queues() or {}
        registered = inspect.registered() or {}
    except SEND_ERRORS as exc:
        raise BrokerUnavailable(
            f"cannot ask the broker which workers serve {queue}: {why_not_sent(exc)}; is Redis up?"
        ) from None
    names = sorted(name for name, qs in queues.items() if any(q.get("name") == queue for q in qs or []))
    able = [n for n in names if keys.TUNE_TASK in (registered.get(n) or [])]
    return able, [n for n in names if n not in able]


def over_workers(
    app: Celery,
    client: redis.Redis,
    target: str,
    config: BenchmarkConfig,
    model: dict[str, Any],
    search_id: str,
    *,
    config_timeout_s: float = CONFIG_TIMEOUT_S,
    on_sent: Callable[[int, ServingConfig], None] = lambda i, s: None,
) -> ConfigMeasurer:
    """A measurer that sends each config as one task to ``podium.<target>`` and waits for all of them;
    ``model``: ``model_run_id``, ``artifact_path``, ``model_name`` and ``input_fingerprint``. A config a worker
    could not measure (its error, or no answer within ``config_timeout_s``) is a failed trial, not an error of
    the search; losing Redis, or every worker, stops the search."""
    queue = keys.queue(target)
    sent_count = 0

    def measure(configs: Sequence[ServingConfig], done: Callable[[ConfigOutcome], None]) -> list[ConfigOutcome]:
        nonlocal sent_count
        sent: list[tuple[ServingConfig, Any]] = []
        try:
            for serving in configs:
                sent.append((serving, _send(app, queue, _request(search_id, config, serving, model))))
                sent_count += 1
                on_sent(sent_count, serving)
            outcomes = []
            deadline = time.monotonic() + config_timeout_s * len(configs)
            for serving, result in sent:
                outcome = _answer(app, queue, serving, result, deadline, config_timeout_s)
                if outcome.trial.error and not result.ready():  # not answered in time: nobody measures it later
                    _stop(app, client, search_id, [(serving, result)])
                done(outcome)
                outcomes.append(outcome)
            return outcomes
        except BaseException:
            _stop(app, client, search_id, sent)  # a finished one stopped changes nothing
            raise

    return measure


def _request(search_id: str, config: BenchmarkConfig, serving: ServingConfig, model: dict[str, Any]) -> str:
    try:
        request = TuneConfigRequest(
            search_id=search_id, config=config, serving=ServingChoice(**serving.as_dict()), **model
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise TuningError(f"config {serving.label} cannot be sent to the workers: {problems}") from None
    return request.encode()


def _send(app: Celery, queue: str, payload: str) -> Any:
    try:
        return app.send_task(keys.TUNE_TASK, args=[json.loads(payload)], queue=queue)
    except SEND_ERRORS as exc:
        raise BrokerUnavailable(f"cannot send a config to {queue}: {why_not_sent(exc)}; the search stopped") from None


def _answer(
    app: Celery, queue: str, serving: ServingConfig, result: Any, deadline: float, each_s: float
) -> ConfigOutcome:
    """The config's outcome once its worker answers; a failed trial when it failed there or was not answered
    in time; BrokerUnavailable when this command lost Redis; TuningError when no worker of the queue is left."""
    from celery.exceptions import TimeoutError as ResultTimeout

    while True:
        wait = min(LIVENESS_EVERY_S, deadline - time.monotonic())
        if wait <= 0:
            why = f"no answer within {each_s:g} s a config: dropped (the workers of {queue} were busy or stuck)"
            return ConfigOutcome(Trial(serving, None, error=why), {})
        try:
            answer = result.get(timeout=wait)
            break
        except ResultTimeout:
            if not queue_workers(app, queue)[0]:
                raise TuningError(
                    f"no worker of {queue} is left to measure {serving.label}: start them again, then re-run the search"
                ) from None
        except Exception as exc:
            if not _failed_on_worker(result):  # this command's own connection, whatever it raised
                raise BrokerUnavailable(f"lost the broker while waiting for {serving.label}: {exc}") from None
            _forget(result)  # the task raised on its worker: that config failed, the search goes on
            return ConfigOutcome(Trial(serving, None, error=f"{type(exc).__name__} on a worker: {exc}"), {})
    _forget(result)
    outcome = ConfigOutcome.from_dict(answer)
    if outcome.trial.config != serving:
        raise TuningError(f"asked a worker for {serving.label}, it answered for {outcome.trial.config.label}")
    return outcome


def _failed_on_worker(result: Any) -> bool:
    """Did the task itself fail (its state FAILURE, as its worker stored it), rather than the reading of it?"""
    try:
        return bool(result.failed())
    except Exception:  # the state cannot be read either: the connection is what failed
        return False


def _forget(result: Any) -> None:
    with contextlib.suppress(Exception):  # answered: its result key need not wait for result_expires
        result.forget()


def _stop(app: Celery, client: redis.Redis, search_id: str, sent: Sequence[tuple[ServingConfig, Any]]) -> None:
    """Configs nobody will wait for: marked stopped in Redis (a worker that takes one later drops it, even one
    started after this command ended) and revoked (the workers running now drop them unread)."""
    if not sent:
        return
    # best effort: Redis may be the reason the search stopped
    with contextlib.suppress(Exception), client.pipeline(transaction=False) as pipe:
        for serving, _ in sent:
            pipe.set(keys.tune_stopped(search_id, serving.label), "1", ex=STOPPED_TTL_S)
        pipe.execute()
    with contextlib.suppress(Exception):
        app.control.revoke([result.id for _, result in sent])
