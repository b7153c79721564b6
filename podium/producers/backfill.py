"""Which champions still need a benchmark under a config (the fix plan's ``filter_missing_benchmarks``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from podium.core.config import BenchmarkConfig
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.run_tags import identity_for
from podium.settings.files import config_hash_of
from podium.tracking.tracker import MlflowTracking, warn_fallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingBenchmark:
    champion: Champion
    identity: BenchmarkIdentity


def filter_missing_benchmarks(
    champions: Iterable[Champion], config: BenchmarkConfig, tracking: MlflowTracking
) -> list[PendingBenchmark]:
    """Champions with no FINISHED benchmark for their ``benchmark_key`` under ``config``.

    ``run.mode: force_new`` returns every champion. One paged read of the store, whatever the count.
    """
    config_hash = config_hash_of(config)
    pending = [PendingBenchmark(c, identity_for(c, config_hash)) for c in champions]
    if config.run.mode == "force_new":
        return pending
    index = tracking.benchmark_index()
    missing = []
    for item in pending:
        found = index.find(item.identity, item.champion)
        if found is None:
            missing.append(item)
        elif found.via == "legacy_fallback":
            warn_fallback(found, item.champion)
    log.info("%d of %d champions need a benchmark under config %s.", len(missing), len(pending), config_hash[:12])
    return missing
