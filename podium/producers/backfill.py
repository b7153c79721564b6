"""Which champions still need a benchmark under a config (the fix plan's ``filter_missing_benchmarks``), and
sending them so that one champion that cannot be sent never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from podium.core.config import BenchmarkConfig
from podium.core.existing import result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion, RefusedRun
from podium.core.run_tags import identity_for
from podium.errors import BrokerUnavailable, PodiumError
from podium.producers.enqueue import Enqueued
from podium.settings.files import config_hash_of
from podium.tracking.tracker import MlflowTracking, warn_fallback, warn_no_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingBenchmark:
    champion: Champion
    identity: BenchmarkIdentity


@dataclass(frozen=True)
class Refusal:
    """A champion (or a training run that would have been one) that backfill could not send, and why."""

    run_id: str
    why: str

    @classmethod
    def of_run(cls, refused: RefusedRun) -> Refusal:
        return cls(refused.run_id, f"its tag {refused.tag} {refused.problem}")


def filter_missing_benchmarks(
    champions: Iterable[Champion], config: BenchmarkConfig, tracking: MlflowTracking
) -> list[PendingBenchmark]:
    """Champions with no FINISHED benchmark holding a result for their ``benchmark_key`` under ``config``.

    ``run.mode: force_new`` returns every champion. One paged read of the store, whatever the count.
    """
    config_hash = config_hash_of(config)
    pending = [PendingBenchmark(c, identity_for(c, config_hash)) for c in champions]
    if config.run.mode == "force_new":
        return pending
    index = tracking.benchmark_index()
    required = result_metrics(config.benchmarking.batch_sizes)
    missing = []
    for item in pending:
        lookup = index.find(item.identity, item.champion, required)
        if lookup.found is None:
            warn_no_result(lookup, item.identity, required)
            missing.append(item)
        elif lookup.found.via == "legacy_fallback":
            warn_fallback(lookup.found, item.champion)
    log.info("%d of %d champions need a benchmark under config %s.", len(missing), len(pending), config_hash[:12])
    return missing


def send_missing(
    missing: Iterable[PendingBenchmark], send: Callable[[PendingBenchmark], Enqueued]
) -> tuple[list[Enqueued], list[Refusal]]:
    """``send`` each benchmark; one whose request is refused (a value no request may carry) is listed with the
    reason and the others are sent. A broker that is away stops it all (``BrokerUnavailable``): nothing after
    it could be sent either, and what was sent is in the queue."""
    sent: list[Enqueued] = []
    refused: list[Refusal] = []
    for item in missing:
        try:
            sent.append(send(item))
        except BrokerUnavailable:
            raise
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
            refused.append(Refusal(item.champion.run_id, f"its request is refused ({problems[:500]})"))
        except (PodiumError, ValueError) as exc:
            refused.append(Refusal(item.champion.run_id, f"its request is refused ({str(exc)[:500]})"))
    for refusal in refused:
        log.warning("Champion run %s was not sent: %s.", refusal.run_id, refusal.why)
    return sent, refused
