"""Benchmark one champion, honouring ``run.mode`` and the idempotency check, as steps: the existing run,
start the run, (measure), its summary, its results with FINISHED; a failure before FINISHED ends the run FAILED.

``benchmark_champion`` is those steps in a row (``podium bench``); the Celery task calls them itself, with the
fenced prepare between the summary and the results and the fenced commit after them
(:func:`podium.workers.execute.execute`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from podium.core.config import BenchmarkConfig
from podium.core.existing import result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.plain import CONVERSION_TAG, SOURCE_PLAIN, SOURCE_TAG, looks_like_run_id
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags, identity_for
from podium.core.store import BenchmarkRuns
from podium.core.tuning import WINNER_TAG
from podium.measurement.measure import Measured
from podium.settings.files import config_hash_of

log = logging.getLogger(__name__)


Measure = Callable[[BenchmarkConfig, Champion], Measured]


@dataclass(frozen=True)
class Outcome:
    status: Literal["measured", "reused"]
    benchmark_key: str
    run_id: str
    via: str | None = None  # how an existing run was found: benchmark_key | legacy_fallback
    measured: Measured | None = None


def existing_run(
    champion: Champion,
    config: BenchmarkConfig,
    tracking: BenchmarkRuns,
    identity: BenchmarkIdentity,
    legacy_epoch: int = 0,
) -> Outcome | None:
    """The FINISHED benchmark of the same key as a ``reused`` outcome (``run.mode: reuse_if_exists``), or None:
    measure (none found, or ``force_new``)."""
    if config.run.mode != "reuse_if_exists":
        return None
    done_means = result_metrics(config.benchmarking.batch_sizes)  # a run with the key but no result: measure
    found = tracking.benchmark_exists(identity, champion, legacy_epoch, done_means)
    if found is None:
        return None
    log.info("Benchmark %s already done in run %s (via %s).", identity.key[:12], found.run_id, found.via)
    return Outcome("reused", identity.key, found.run_id, found.via)


def start_run(
    champion: Champion,
    config: BenchmarkConfig,
    tracking: BenchmarkRuns,
    identity: BenchmarkIdentity,
    *,
    worker: str,
    fencing_token: int | None = None,
    start_time: int | None = None,
) -> tuple[str, int]:
    """Create the benchmark run (RUNNING) with every tag known before measuring; returns its id and start time
    (``start_time``, epoch ms, stamps it; default: this machine's clock)."""
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
    return tracking.start_benchmark_run(
        tags, run_name=f"benchmark-{champion.trial_key_hash[:8]}", start_time=start_time
    )


def record_summary(tracking: BenchmarkRuns, run_id: str, config: BenchmarkConfig, measured: Measured) -> None:
    """``benchmark.json`` on the run (the worker writes it before the fenced prepare: a failure here, a full disk,
    leaves no prepared commit behind); first, a serving-config search's configs as child runs of it and the
    winner's ``config.pbtxt``, so its table names their runs."""
    summary = measured.summary
    if measured.search is not None:
        from podium.measurement.tune import record_search

        summary = dict(summary) | {"tune": record_search(tracking, run_id, measured.search)}
    tracking.record_summary(run_id, summary, config.output.filename)


def finish_with_results(tracking: BenchmarkRuns, run_id: str, config: BenchmarkConfig, measured: Measured) -> None:
    """The run's metrics and the tags only measuring tells, and FINISHED with them (one transaction on a database
    store); its summary is written before (:func:`record_summary`)."""
    device_tags = {tracking.tags.benchmark.device: measured.device}
    if measured.stability:
        device_tags[tracking.tags.benchmark.stability] = measured.stability
    if measured.summary.get("model_conversion"):  # an eager nn.Module traced or exported: said on the run
        device_tags[CONVERSION_TAG] = str(measured.summary["model_conversion"])
    if measured.search is not None and measured.search.winner is not None:
        device_tags[WINNER_TAG] = measured.search.winner.trial.config.label
    tracking.record_results(run_id, measured.metrics, None, config.output.filename, device_tags, finish=True)


@contextmanager
def failing_run(tracking: BenchmarkRuns, run_id: str) -> Iterator[None]:
    """Any failure inside ends the run FAILED, with the reason as a tag, and is raised: the steps from start
    to FINISHED run inside it (a run is never left RUNNING by a failure this process sees)."""
    try:
        yield
    except BaseException as exc:
        tracking.fail_run(run_id, f"{type(exc).__name__}: {exc}")
        raise


def benchmark_champion(
    champion: Champion,
    config: BenchmarkConfig,
    tracking: BenchmarkRuns,
    measure: Measure,
    *,
    worker: str,
    identity: BenchmarkIdentity | None = None,
    fencing_token: int | None = None,
    start_time: int | None = None,
    legacy_epoch: int = 0,
) -> Outcome:
    """Reuse a FINISHED benchmark of the same key (unless ``force_new``), else measure and log one: the steps
    above in a row. Any failure up to FINISHED ends the run FAILED with the reason as a tag."""
    identity = identity or identity_for(champion, config_hash_of(config))
    if (found := existing_run(champion, config, tracking, identity, legacy_epoch)) is not None:
        return found
    run_id, _ = start_run(
        champion, config, tracking, identity, worker=worker, fencing_token=fencing_token, start_time=start_time
    )
    with failing_run(tracking, run_id):
        measured = measure(config, champion)
        record_summary(tracking, run_id, config, measured)
        finish_with_results(tracking, run_id, config, measured)
    return Outcome("measured", identity.key, run_id, measured=measured)
