"""One benchmark request, end to end, as a plain function (the Celery task is a thin shell around it).

validate -> done marker? -> fenced lock -> (a commit left pending by a dead or fenced-out worker: end
that run, measure again) -> done marker / MLflow check again under the lock -> measure (heartbeat; a lost
lock aborts) -> benchmark.json -> prepare under the fence (marker ``pending:<run>``) -> results and FINISHED in
MLflow (one transaction) -> commit under the fence (marker = run, result event) -> release. A lost lock ends the
run FAILED and publishes nothing; Redis never names a run as done that MLflow does not hold FINISHED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import redis

from podium.coordination import keys
from podium.coordination.commit import FencedCommit, committed_run, pending_run
from podium.coordination.heartbeat import Heartbeat
from podium.coordination.legacy import read_epoch
from podium.coordination.lock import DEFAULT_MARKER_TTL_S, DEFAULT_TTL_MS, FencedLock
from podium.core.backend_registry import backend_spec
from podium.core.cores import Placement
from podium.core.messages import BenchmarkRequest, BenchmarkResult
from podium.errors import LockBusy, LockLost
from podium.measurement.lifecycle import (
    Measured,
    existing_run,
    failing_run,
    finish_with_results,
    record_summary,
    start_run,
)
from podium.measurement.loop import Progress
from podium.tracking.tracker import MlflowTracking
from podium.tracking.write_back import source_runs, write_back
from podium.workers.fencing import Fencing, RedisFencing
from podium.workers.placement import CoreBudget, placed, record_placement, where_measured
from podium.workers.sweeper import sweep

log = logging.getLogger(__name__)

#: How a worker measures a request: (request, progress) -> Measured.
MeasureRequest = Callable[[BenchmarkRequest, Progress], Measured]


@dataclass
class WorkerDeps:
    redis: redis.Redis
    tracking: MlflowTracking
    measure: MeasureRequest
    worker: str
    lock_ttl_ms: int = DEFAULT_TTL_MS
    #: Lifetime of done markers and fencing counters, seconds (0: forever).
    marker_ttl_s: int = DEFAULT_MARKER_TTL_S
    #: How the lock of a benchmark key is taken and what it guards committed.
    fencing: Fencing = field(default_factory=RedisFencing)
    #: This worker's Triton (``PODIUM_TRITON_URL``); a triton request cannot be served without it.
    triton_url: str | None = None
    #: The host's cores this worker claims for each measurement (None: measure unpinned, claiming nothing).
    cores: CoreBudget | None = None
    #: Write the headline figures back onto the measured run (``PODIUM_WRITE_BACK``).
    write_back: bool = False


@dataclass(frozen=True)
class TaskOutcome:
    status: Literal["measured", "reused"]
    benchmark_key: str
    run_id: str
    via: str | None = None
    fencing_token: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def refusal(request: BenchmarkRequest, deps: WorkerDeps) -> str | None:
    """Why this worker can never serve ``request`` (retrying it here would only meet the same wall), or None."""
    backend = request.config.benchmarking.backend
    if backend_spec(backend).server and not deps.triton_url:
        return (
            f"worker {deps.worker} has no inference server (PODIUM_TRITON_URL is unset) for a backend: {backend} "
            f"request; start the workers of target {request.config.benchmarking.target!r} with --triton-url HOST:PORT"
        )
    if request.store is not None and (own := deps.tracking.store_ref()).id != request.store.id:
        return (
            f"request {request.request_id} was sent from the MLflow store {request.store.uri} ({request.store.id}) "
            f"but worker {deps.worker} uses {own.uri} ({own.id}); set the same PODIUM_TRACKING_URI for the workers "
            "and the training"
        )
    return None


def execute(request: BenchmarkRequest, deps: WorkerDeps) -> TaskOutcome:
    identity = request.verified_identity()
    key = identity.key
    reuse = request.config.run.mode == "reuse_if_exists"
    if reuse and (done := committed_run(deps.redis.get(keys.done(key)))):
        return TaskOutcome("reused", key, done, "done_marker")
    lock = deps.fencing.lock(deps.redis, key, deps.lock_ttl_ms, deps.marker_ttl_s)
    fencing = lock.acquire()
    if fencing is None:
        raise LockBusy(f"benchmark {key} is being measured by another worker")
    lock.start_watchdog()
    beat = Heartbeat(deps.redis, key, deps.worker, request.config.benchmarking.target, request.request_id)
    try:
        beat.beat("checking", force=True)
        marker = deps.redis.get(keys.done(key))
        if (abandoned := pending_run(marker)) is not None:
            _end_uncommitted(deps, key, abandoned)
        if fencing > 1:  # this key was locked before: end its runs left RUNNING by a killed worker
            sweep(deps.tracking, deps.redis, key)
        if reuse and (done := committed_run(marker)):
            return TaskOutcome("reused", key, done, "done_marker")
        with placed(deps.cores, request.config.benchmarking) as placement:  # CoresBusy: retried later
            return _run(request, deps, lock, deps.fencing.commit(lock), beat, placement)
    finally:
        beat.clear()
        lock.release()


def _end_uncommitted(deps: WorkerDeps, key: str, run_id: str) -> None:
    """A commit prepared under an older fence never completed (its worker died or lost the lock between
    marking and publishing): that run was never published, so it is ended KILLED and the key measured again."""
    reason = "its commit did not complete (its worker stopped or lost the lock after preparing it)"
    log.warning("Benchmark %s: ending run %s, %s; measuring again.", key[:12], run_id, reason)
    deps.tracking.fail_run(run_id, reason, status="KILLED", strict=True)  # else the marker stays, retried later
    deps.redis.delete(keys.done(key))


def _run(
    request: BenchmarkRequest,
    deps: WorkerDeps,
    lock: FencedLock,
    commit: FencedCommit,
    beat: Heartbeat,
    placement: Placement | None = None,
) -> TaskOutcome:
    """Under the lock: the MLflow check, then start, measure, summary, prepare, results with FINISHED, commit, in
    that order."""
    identity, cfg, champion = request.identity, request.config, request.champion
    start_time, legacy_epoch = lock.now_ms(), read_epoch(deps.redis)
    # run.mode is honoured here: the MLflow check, now under the lock
    found = existing_run(champion, cfg, deps.tracking, identity, legacy_epoch)
    if found is not None:
        deps.redis.set(keys.done(identity.key), found.run_id, ex=deps.marker_ttl_s or None)
        return TaskOutcome("reused", identity.key, found.run_id, found.via)

    def progress(batch: int, phase: str, done: int, total: int) -> None:
        lock.check()  # a lost lock aborts the measurement here
        beat.beat(phase, f"batch {batch}: {done}/{total}")

    run_id, start_time = start_run(
        champion,
        cfg,
        deps.tracking,
        identity,
        worker=deps.worker,
        fencing_token=lock.fencing_token,
        start_time=start_time,
    )
    with failing_run(deps.tracking, run_id):  # up to FINISHED, any failure (a refused prepare too) ends it FAILED
        beat.beat("measuring", force=True)
        where = where_measured(placement)  # read while pinned
        measured = record_placement(deps.measure(request, progress), placement, where)
        record_summary(deps.tracking, run_id, cfg, measured)
        beat.beat("committing", force=True)
        commit.prepare(run_id)
        finish_with_results(deps.tracking, run_id, cfg, measured)
    result = BenchmarkResult(
        benchmark_key=identity.key,
        run_id=run_id,
        start_time=start_time,
        study_key_hash=request.study_key_hash,
        trial_key_hash=request.trial_key_hash,
        config_hash=identity.config_hash,
        champion_run_id=request.champion_run_id,
        metrics=dict(measured.metrics),
        device=measured.device,
        worker=deps.worker,
        fencing_token=lock.fencing_token or 0,
        stability=measured.stability,
    )
    try:
        commit.commit(run_id, result.encode())
    except LockLost as exc:  # refused by the fence: certainly not committed; the new holder measures
        deps.tracking.fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise
    # any other failure (Redis away mid-commit): the marker says whether it went through; the run stays
    if deps.write_back:  # committed: F1 and latency in one row of MLflow's compare view (never fails it)
        write_back(
            deps.tracking,
            source_runs(request.champion_run_id, request.trial_key_hash),
            measured.metrics,
            cfg.benchmarking.batch_sizes,
            benchmark_run_id=run_id,
            benchmark_key=identity.key,
            stability=measured.stability,
            backend=cfg.benchmarking.backend,
        )
    return TaskOutcome("measured", identity.key, run_id, fencing_token=lock.fencing_token)
