"""Build a worker's dependencies from settings: Redis, MLflow, the measurement function."""

from __future__ import annotations

from contextlib import AbstractContextManager

import redis

from podium.coordination.connection import connect
from podium.core.messages import BenchmarkRequest
from podium.errors import MessageError
from podium.measurement.artifacts import ModelSource
from podium.measurement.lifecycle import Measured
from podium.measurement.loop import Progress
from podium.measurement.measure import measure_model
from podium.settings.env import PodiumSettings, worker_name
from podium.settings.files import input_fingerprint
from podium.tracking.tracker import MlflowTracking
from podium.workers.execute import MeasureRequest, WorkerDeps
from podium.workers.placement import CoreBudget

#: A deployment's name on the server: unique to the benchmark_key, so workers sharing a server never collide.
DEPLOYMENT_PREFIX = "podium-"


def deployment_name(benchmark_key: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{benchmark_key[:32]}"


def request_measurer(
    tracking: MlflowTracking, triton_url: str | None, client: redis.Redis, worker: str
) -> MeasureRequest:
    """How this worker measures a request; a serving-config search it asks for takes the server's turn (the
    Redis lock ``podium tune --target`` takes) for each config, so workers sharing a server never overlap."""

    def measure(request: BenchmarkRequest, progress: Progress) -> Measured:
        cfg = request.config.benchmarking

        def server_turn() -> AbstractContextManager[object]:
            from podium.backends.triton import host_port
            from podium.workers.tune_task import server_turn_held

            assert triton_url is not None  # a search needs the server: refused before measuring otherwise
            return server_turn_held(client, host_port(triton_url, cfg.protocol), worker)  # as a spread search names it

        if cfg.test_data is not None and input_fingerprint(cfg) != request.input_fingerprint:
            raise MessageError(
                f"request {request.request_id}: test data {cfg.test_data} on this worker differs from the "
                "producer's (content hash mismatch); the measurement would not match its benchmark_key"
            )
        source = ModelSource(request.champion_run_id, request.artifact_path, None)
        return measure_model(
            request.config,
            source,
            tracking,
            url=triton_url,
            progress=progress,
            config_hash=request.identity.config_hash,
            deployment_name=deployment_name(request.benchmark_key),
            server_turn=server_turn,
        )

    return measure


def build_deps(settings: PodiumSettings) -> WorkerDeps:
    tracking = MlflowTracking.from_settings(settings)
    client = connect(settings.redis_url)
    worker = settings.worker_name or worker_name()
    return WorkerDeps(
        redis=client,
        tracking=tracking,
        measure=request_measurer(tracking, settings.triton_url, client, worker),
        worker=worker,
        lock_ttl_ms=settings.lock_ttl_ms,
        marker_ttl_s=int(settings.done_ttl_days * 24 * 3600),
        triton_url=settings.triton_url,
        cores=CoreBudget.for_host(client, worker, ttl_ms=settings.lock_ttl_ms),  # a dead worker's cores: like its locks
        write_back=settings.write_back,
    )
