"""Benchmark one champion, honouring ``run.mode`` and the idempotency check: the plain function behind
``podium bench`` and the Celery task (which adds the lock and the fenced commit around it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from podium.core.config import BenchmarkConfig
from podium.core.existing import result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.plain import CONVERSION_TAG, SOURCE_PLAIN, SOURCE_TAG, looks_like_run_id
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags, identity_for
from podium.measurement.session import Measured
from podium.settings.files import config_hash_of
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)


Measure = Callable[[BenchmarkConfig, Champion], Measured]
#: Runs after results are recorded and before the run is marked FINISHED (the worker's fenced prepare).
BeforeFinish = Callable[[str, int, Measured], None]
#: Runs after the run is marked FINISHED (the worker's fenced commit).
AfterFinish = Callable[[str, int, Measured], None]


@dataclass(frozen=True)
class Outcome:
    status: Literal["measured", "reused"]
    benchmark_key: str
    run_id: str
    via: str | None = None  # how an existing run was found: benchmark_key | legacy_fallback
    measured: Measured | None = None


def benchmark_champion(
    champion: Champion,
    config: BenchmarkConfig,
    tracking: MlflowTracking,
    measure: Measure,
    *,
    worker: str,
    identity: BenchmarkIdentity | None = None,
    fencing_token: int | None = None,
    before_finish: BeforeFinish | None = None,
    after_finish: AfterFinish | None = None,
    start_time: int | None = None,
    legacy_epoch: int = 0,
) -> Outcome:
    """Reuse a FINISHED benchmark of the same key (unless ``force_new``), else measure and log one.

    Any failure up to FINISHED, ``before_finish`` refusing included, ends the run FAILED with the reason as
    a tag; ``after_finish`` handles its own failures. ``start_time`` (epoch ms) stamps the run (default: this
    machine's clock)."""
    identity = identity or identity_for(champion, config_hash_of(config))
    if config.run.mode == "reuse_if_exists":
        done_means = result_metrics(config.benchmarking.batch_sizes)  # a run with the key but no result: measure
        found = tracking.benchmark_exists(identity, champion, legacy_epoch, done_means)
        if found is not None:
            log.info("Benchmark %s already done in run %s (via %s).", identity.key[:12], found.run_id, found.via)
            return Outcome("reused", identity.key, found.run_id, found.via)
    cfg = config.benchmarking
    tags = benchmark_run_tags(
        tracking.tags,
        identity,
        champion,
        backend=cfg.backend,
        target=cfg.target,
        worker=worker,
        fencing_token=fencing_token,
    )
    tags[tracking.tags.benchmark.model_format] = cfg.model_format  # known now: written with the run, not after
    if looks_like_run_id(champion.trial_key_hash):  # a plain MLflow run's trial: found again by this tag
        tags[SOURCE_TAG] = SOURCE_PLAIN
    run_id, start_time = tracking.start_benchmark_run(
        tags, run_name=f"benchmark-{champion.trial_key_hash[:8]}", start_time=start_time
    )
    try:
        measured = measure(config, champion)
        device_tags = {tracking.tags.benchmark.device: measured.device}
        if measured.stability:
            device_tags[tracking.tags.benchmark.stability] = measured.stability
        if measured.summary.get("model_conversion"):  # an eager nn.Module traced or exported: said on the run
            device_tags[CONVERSION_TAG] = str(measured.summary["model_conversion"])
        tracking.record_results(run_id, measured.metrics, measured.summary, config.output.filename, device_tags)
        if before_finish is not None:
            before_finish(run_id, start_time, measured)
        tracking.finish_run(run_id)
    except BaseException as exc:
        tracking.fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise
    if after_finish is not None:  # the caller's commit; what its failure means to the run is its call
        after_finish(run_id, start_time, measured)
    return Outcome("measured", identity.key, run_id, measured=measured)
