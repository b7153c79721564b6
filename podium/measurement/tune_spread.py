"""``podium tune --target T``: a search's configs spread over the workers of queue ``podium.T``, each measured on
the worker's own Triton server (one per GPU), all of one step at once: the whole grid in exhaustive mode, one
dimension's values in quick mode. The worker side is :mod:`podium.workers.tune_task`; the search and the MLflow
runs stay here, as for a search on one server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

from podium.coordination import keys
from podium.core.config import BenchmarkConfig
from podium.core.messages import ServingChoice, TuneConfigRequest
from podium.core.tuning import ServingConfig, Trial
from podium.errors import BrokerUnavailable, TuningError
from podium.measurement.tune import ConfigMeasurer, ConfigOutcome

#: How long ``podium tune`` waits for the workers of its queue to answer who they are (s).
INSPECT_TIMEOUT_S = 2.0
#: How long it waits for one config's answer (its turn on a busy server, the model's fetch, the levels) (s).
CONFIG_TIMEOUT_S = 3600.0


def queue_workers(app: Celery, queue: str, timeout_s: float = INSPECT_TIMEOUT_S) -> list[str]:
    """The Celery workers consuming ``queue`` now (asked over the broker), by name."""
    try:
        answers = app.control.inspect(timeout=timeout_s).active_queues() or {}
    except OSError as exc:
        raise BrokerUnavailable(f"cannot ask the broker which workers serve {queue}: {exc}") from None
    return sorted(name for name, queues in answers.items() if any(q.get("name") == queue for q in queues or []))


def over_workers(
    app: Celery,
    target: str,
    config: BenchmarkConfig,
    model: dict[str, Any],
    search_id: str,
    *,
    config_timeout_s: float = CONFIG_TIMEOUT_S,
    on_start: Callable[[int, ServingConfig], None] = lambda i, s: None,
) -> ConfigMeasurer:
    """A measurer that sends each config as one task to ``podium.<target>`` and waits for all of them;
    ``model``: ``model_run_id``/``artifact_path`` or ``model_uri``, and ``model_name``. A config a worker could
    not measure (its error, or no answer within ``config_timeout_s``) is a failed trial, not an error of the
    search."""
    queue = keys.queue(target)
    started = 0

    def measure(configs: Sequence[ServingConfig], done: Callable[[ConfigOutcome], None]) -> list[ConfigOutcome]:
        nonlocal started
        sent = []
        for serving in configs:
            request = TuneConfigRequest(
                search_id=search_id, config=config, serving=ServingChoice(**serving.as_dict()), **model
            )
            result = app.send_task(keys.TUNE_TASK, args=[json.loads(request.encode())], queue=queue)
            started += 1
            on_start(started, serving)
            sent.append((serving, result))
        outcomes = []
        for serving, result in sent:
            outcome = _answer(serving, result, config_timeout_s)
            done(outcome)
            outcomes.append(outcome)
        return outcomes

    return measure


def _answer(serving: ServingConfig, result: Any, timeout_s: float) -> ConfigOutcome:
    from celery.exceptions import TimeoutError as ResultTimeout

    try:
        answer = result.get(timeout=timeout_s)
    except ResultTimeout:
        why = f"no worker answered within {timeout_s:g} s (are the workers of its queue busy or gone?)"
        return ConfigOutcome(Trial(serving, None, error=why), {})
    except Exception as exc:  # the task raised on the worker: its reason, as a failed config
        return ConfigOutcome(Trial(serving, None, error=f"{type(exc).__name__} on a worker: {exc}"), {})
    finally:
        with contextlib.suppress(Exception):  # answered: its result key need not wait for result_expires
            result.forget()
    outcome = ConfigOutcome.from_dict(answer)
    if outcome.trial.config != serving:
        raise TuningError(f"asked a worker for {serving.label}, it answered for {outcome.trial.config.label}")
    return outcome
