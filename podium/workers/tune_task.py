"""The worker's side of a spread search: one serving config of one model measured on this worker's Triton server.

The task is thin: :func:`measure_serving_config` does the work, callable without a broker. Two workers sharing a
server take turns (a Redis lock per server), so one config's load never overlaps another's; workers with a
server each measure at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task

from podium.coordination import keys
from podium.coordination.lock import FencedLock
from podium.core.messages import TuneConfigRequest, decode
from podium.core.tuning import ServingConfig
from podium.errors import TuningError
from podium.measurement.tune import TuneTarget, measure_config
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)

#: How long a config waits for its turn on a server another worker is tuning on (s), and the lock's TTL (ms).
SERVER_WAIT_S = 1800.0
SERVER_LOCK_TTL_MS = 30_000


def server_name(server: str) -> str:
    """One name per server, however a worker was told its address (``localhost:8000``, ``127.0.0.1:8000``,
    ``[::1]:8000``): the address it resolves to, in characters a Redis key of podium's takes."""
    host, _, port = server.rpartition(":")
    host = host.strip("[]")
    with contextlib.suppress(OSError):
        host = str(socket.getaddrinfo(host, None)[0][4][0])
    return re.sub(r"[^A-Za-z0-9_.:\-]", "-", f"at-{host}:{port}")


def server_turn(client: redis.Redis, server: str, worker: str, wait_s: float = SERVER_WAIT_S) -> FencedLock:
    """This worker's turn on ``server`` (host:port), waited for; renewed until released."""
    name = server_name(server)
    lock = FencedLock(client, keys.tune_server_lock(name), keys.tune_server_fence(name), SERVER_LOCK_TTL_MS)
    deadline, pause, said = time.monotonic() + wait_s, 0.05, False
    while lock.acquire() is None:
        if not said:
            log.info("%s: another worker is tuning on %s; waiting for its turn.", worker, server)
            said = True
        if time.monotonic() > deadline:
            raise TuningError(
                f"{server} was busy with another worker's tuning for {wait_s:g} s: run one search at a time on a "
                "server, or give each worker a server of its own"
            )
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    lock.start_watchdog()
    return lock


@contextlib.contextmanager
def server_turn_held(client: redis.Redis, server: str, worker: str) -> Iterator[FencedLock]:
    """:func:`server_turn` for the time of the block, released after it (its ``lost`` still readable)."""
    lock = server_turn(client, server, worker)
    try:
        yield lock
    finally:
        lock.release()


def measure_serving_config(
    request: TuneConfigRequest, tracking: MlflowTracking, client: redis.Redis, triton_url: str | None, worker: str
) -> dict[str, Any]:
    """Fetch the model, deploy ``request.serving`` on this worker's server, run the load levels, unload; the
    outcome as JSON, with the worker, the server and when it measured."""
    from podium.backends.triton import deployment, host_port
    from podium.measurement.artifacts import ModelSource, fetch_model
    from podium.measurement.server_memory import find_server_at
    from podium.settings.files import input_fingerprint

    serving = ServingConfig(**request.serving.model_dump())
    if client.exists(keys.tune_stopped(request.search_id, serving.label)):
        log.info(
            "%s: config %s of search %s was stopped before it was measured; dropped.",
            worker,
            serving.label,
            request.search_id,
        )
        raise TuningError(f"config {serving.label} of search {request.search_id} was stopped before it was measured")
    if not triton_url:
        raise TuningError(f"worker {worker} has no Triton server to tune on: restart it with --triton-url HOST:PORT")
    bench = request.config.benchmarking
    if input_fingerprint(bench) != request.input_fingerprint:
        raise TuningError(
            f"worker {worker}: the test data here differs from the sender's (content hash mismatch): its configs "
            "would be measured on other inputs than the rest; give every worker the same files"
        )
    server = host_port(triton_url, bench.protocol)
    source = ModelSource(request.model_run_id, request.artifact_path, None)
    with tempfile.TemporaryDirectory(prefix="podium-tune-") as tmp:
        model_file, _ = fetch_model(source, tracking, Path(tmp), bench)
        memory, _ = find_server_at(server)
        base = deployment(bench, model_file, request.model_name)
        target = TuneTarget(triton_url, bench.protocol, bench.request_timeout_s, base, memory)
        with server_turn_held(client, server, worker) as turn:
            began = time.time()
            outcome = measure_config(target, serving, bench)
            ended = time.time()
    # Redis was away long enough for the turn to lapse: another worker's config may have overlapped
    if turn.lost.is_set():
        outcome.summary.setdefault("notes", []).append(
            f"this worker's turn on {server} lapsed during the measurement; another config may have overlapped it"
        )
    answer = outcome.to_dict()
    answer["summary"] |= {"worker": worker, "server": server, "measured_from": began, "measured_to": ended}
    return answer


def register(app: Celery) -> None:
    # a worker process that dies measuring a config fails that config (reject_on_worker_lost would requeue it
    # for ever if the config itself kills it); a whole worker that dies is requeued by podium's reaper
    @app.task(name=keys.TUNE_TASK, bind=True, acks_late=True, reject_on_worker_lost=False)
    def tune_config(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        from podium.workers.tasks import worker_deps

        deps = worker_deps(self.app)
        request = decode(TuneConfigRequest, payload)
        return measure_serving_config(request, deps.tracking, deps.redis, deps.triton_url, deps.worker)
