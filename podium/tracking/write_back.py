"""Write a benchmark's headline figures back onto the run it measured (``podium.*`` metrics and tags).

One small step after a benchmark is committed; switched off with ``PODIUM_WRITE_BACK=false``. A failure here
never fails the benchmark: it is logged as a warning and the benchmark stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from mlflow.entities import Metric, RunTag

from podium.core.headline import headline
from podium.tracking.one_transaction import log_batch
from podium.tracking.tracker import MlflowTracking

log = logging.getLogger(__name__)


def write_back(
    tracking: MlflowTracking,
    run_ids: Iterable[str],
    metrics: Mapping[str, float],
    batch_sizes: Iterable[int],
    *,
    benchmark_run_id: str,
    benchmark_key: str,
    stability: str,
    backend: str,
) -> bool:
    """Log the headline onto each of ``run_ids`` (the champion, and a plain trial's own run); False (warned)
    when the store refused."""
    figures, tags = headline(
        metrics,
        batch_sizes,
        benchmark_run_id=benchmark_run_id,
        benchmark_key=benchmark_key,
        stability=stability,
        backend=backend,
    )
    now = int(time.time() * 1000)
    done = True
    for run_id in dict.fromkeys(run_ids):
        try:
            log_batch(
                tracking.client,
                run_id,
                [Metric(k, v, now, 0) for k, v in sorted(figures.items())],
                [RunTag(k, v) for k, v in sorted(tags.items())],
            )
        except Exception as exc:  # never the benchmark's failure: it is committed already
            done = False
            log.warning(
                "Benchmark run %s is done, but writing its figures back onto run %s failed (%s); set "
                "PODIUM_WRITE_BACK=false to stop trying.",
                benchmark_run_id,
                run_id,
                str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__,
            )
    return done


def source_runs(champion_run_id: str, trial_key_hash: str) -> list[str]:
    """The runs a benchmark's figures go back to: the champion, and a plain trial's own run when it differs."""
    from podium.core.plain import looks_like_run_id

    runs = [champion_run_id]
    if looks_like_run_id(trial_key_hash) and trial_key_hash != champion_run_id:
        runs.append(trial_key_hash)
    return runs
