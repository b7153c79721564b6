"""Enqueue benchmark requests: validated and keyed before anything is sent."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis.exceptions import RedisError

from podium.coordination import keys
from podium.coordination.connection import SEND_ERRORS, why_not_sent
from podium.core.backend_registry import format_of_path
from podium.core.config import BenchmarkConfig
from podium.core.identity import UNKNOWN_FINGERPRINT, benchmark_config_hash
from podium.core.messages import BenchmarkRequest, StoreRef
from podium.core.records import ARTIFACT_PATHS, Champion
from podium.core.run_tags import identity_for
from podium.errors import BrokerUnavailable
from podium.settings.env import redact_url
from podium.settings.files import input_fingerprint

log = logging.getLogger(__name__)
#: Set once this process has warned about a champion without fingerprints (once is enough).
_unknown_warned = threading.Event()
#: Set once this process has warned that it could not note a request in the sent log.
_sent_log_warned = threading.Event()


@dataclass(frozen=True)
class Enqueued:
    benchmark_key: str
    task_id: str
    queue: str
    request_id: str


def build_request(
    champion: Champion,
    config: BenchmarkConfig,
    *,
    artifact_path: str | None = None,
    store: StoreRef | None = None,
) -> BenchmarkRequest:
    """The request for benchmarking ``champion`` under ``config``; the key comes from the one key function.
    ``artifact_path``: the model inside the champion run (default: ``model/model.pt``, or ``model/model.onnx``
    for ``model_format: onnx``)."""
    if UNKNOWN_FINGERPRINT in (champion.data_fp, champion.eval_fp) and not _unknown_warned.is_set():
        _unknown_warned.set()
        log.warning(
            "Run %s has no data or eval fingerprint; it is benchmarked, but a change of its data will not change "
            "its benchmark_key. Open runs with podium.training.trial_run / refit_run (data_fp=, eval_fp=).",
            champion.run_id,
        )
    if (named := format_of_path(artifact_path)) is not None and named != config.benchmarking.model_format:
        config = config.with_overrides(model_format=named)  # a .onnx artifact is ONNX: keyed and measured so
    fingerprint = input_fingerprint(config.benchmarking)
    identity = identity_for(champion, benchmark_config_hash(config.benchmarking, fingerprint))
    request = BenchmarkRequest(
        champion_run_id=champion.run_id,
        study_key_hash=champion.study_key_hash,
        trial_key_hash=champion.trial_key_hash,
        data_fp=champion.data_fp,
        eval_fp=champion.eval_fp,
        artifact_path=artifact_path or ARTIFACT_PATHS[config.benchmarking.model_format],
        config=config,
        input_fingerprint=fingerprint,
        benchmark_key=identity.key,
        store=store,
    )
    request.encode()  # size check before anything is sent
    return request


#: Broker connection retries of one send (kombu's retry policy); a hook sends with none.
SEND_RETRIES = 3


def send_request(app: Celery, request: BenchmarkRequest, retries: int = SEND_RETRIES) -> Enqueued:
    """Send one validated request; raises ``BrokerUnavailable`` (never loses it silently) when Redis is down."""
    queue = keys.queue(request.config.benchmarking.target)
    try:
        result = app.send_task(
            keys.BENCHMARK_TASK,
            args=[json.loads(request.encode())],
            queue=queue,
            retry=retries > 0,
            retry_policy={"max_retries": retries, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        )
    except SEND_ERRORS as exc:
        raise BrokerUnavailable(
            f"cannot send benchmark request {request.request_id} ({request.benchmark_key[:12]}…) to the broker at "
            f"{redact_url(str(app.conf.broker_url))}: {why_not_sent(exc)}; it was not enqueued, try again when "
            "Redis is back"
        ) from None
    _note_sent(app, request, result.id, queue)
    log.info(
        "Enqueued benchmark %s of run %s on %s (task %s).",
        request.benchmark_key[:12],
        request.champion_run_id,
        queue,
        result.id,
    )
    return Enqueued(request.benchmark_key, result.id, queue, request.request_id)


def _note_sent(app: Celery, request: BenchmarkRequest, task_id: str, queue: str) -> None:
    """Note the request in ``podium:sent`` (for ``podium backfill --sent``) through the result backend's Redis
    pool; a failure costs only that note (one warning per process), never the send."""
    from podium.coordination.sent import note_sent

    try:
        note_sent(app.backend.client, task_id, request.benchmark_key, queue, request.encode())
    except (RedisError, OSError, AttributeError) as exc:
        if not _sent_log_warned.is_set():
            _sent_log_warned.set()
            log.warning(
                "Sent request %s but could not note it in %s (%s): if its queue loses it, backfill --sent "
                "cannot re-send it.",
                request.request_id,
                keys.SENT_STREAM,
                exc,
            )


def enqueue_benchmark(
    app: Celery, champion: Champion, config: BenchmarkConfig, *, retries: int = SEND_RETRIES, **request_options: Any
) -> Enqueued:
    """Validate, key and send one request to its target's queue; raises before sending on bad input."""
    return send_request(app, build_request(champion, config, **request_options), retries)
