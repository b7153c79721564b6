"""Each measurement on cores of its own: claim ``benchmarking.threads`` cores of this host through Redis, pin
this worker process to them, measure, give them back; and write where it ran on the run.

A measurement whose cores are claimed by other workers of the host waits (``CoresBusy``: the task is
retried later, like a busy lock), or with ``benchmarking.busy_cores: contended`` measures now on what is
left, flagged ``contended`` on the run. More threads than the host has cores is always flagged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import redis

from podium.backends.hardware import cpu_model
from podium.backends.host_cores import affinity, host_cores, pin
from podium.coordination.cores import DEFAULT_CLAIM_TTL_MS, CoreClaims
from podium.core.config import BenchmarkingSection
from podium.core.cores import Placement, cores_needed, format_core_list, oversubscribed
from podium.errors import CoresBusy
from podium.measurement.measure import Measured

log = logging.getLogger(__name__)


@dataclass
class CoreBudget:
    """This worker process's view of its host's cores: the usable ones (read once, before any pinning) and the
    claims shared with the host's other workers."""

    claims: CoreClaims
    usable: list[int]
    #: The process's affinity before any pinning: restored after each measurement.
    home: list[int]

    @classmethod
    def for_host(
        cls, client: redis.Redis, worker: str, host: str | None = None, ttl_ms: int = DEFAULT_CLAIM_TTL_MS
    ) -> CoreBudget:
        """This process's budget on its host (``os.uname().nodename``); a claim not renewed for ``ttl_ms`` (its
        worker died) is free again."""
        claims = CoreClaims(client, host or os.uname().nodename, worker, ttl_ms)
        budget = cls(claims, host_cores(), affinity())
        with contextlib.suppress(redis.RedisError):  # shown by `podium status`; said again at the first claim
            budget.claims.announce(budget.usable)
        return budget

    @contextlib.contextmanager
    def place(self, cfg: BenchmarkingSection) -> Iterator[Placement]:
        """Claim and pin for one measurement; the claim is renewed while it runs and released after."""
        needed = cores_needed(cfg.threads, self.usable)
        claim = self.claims.claim(needed, self.usable, shared=cfg.busy_cores == "contended")
        if claim is None:
            busy = CoresBusy(
                f"{needed} free core(s) needed and the other workers of host {self.claims.host} hold its cores "
                f"{format_core_list(self.usable)}; waiting (or set benchmarking.busy_cores: contended)"
            )
            log.info("%s.", busy)
            raise busy
        watchdog = self.claims.watchdog(claim).start()
        cores = list(claim.cores) or list(self.usable)  # none free (contended): on all of them
        why = oversubscribed(cfg.threads, self.usable)
        if claim.contended:
            free = format_core_list(claim.cores) or "none"
            why = why or f"only cores {free} were free; it shares cores with other workers"
        try:
            placement = Placement(self.claims.host, cfg.threads, tuple(cores), tuple(self.usable), pin(cores), why)
            if placement.contended:
                log.warning("Measuring contended on host %s: %s.", self.claims.host, why)
            yield placement
        finally:
            watchdog.stop()
            pin(self.home)
            with contextlib.suppress(redis.RedisError):  # else the claim lapses with its TTL
                self.claims.release(claim)


@contextlib.contextmanager
def placed(budget: CoreBudget | None, cfg: BenchmarkingSection) -> Iterator[Placement | None]:
    """:meth:`CoreBudget.place`, or nothing for a worker without a core budget."""
    if budget is None:
        yield None
        return
    with budget.place(cfg) as placement:
        yield placement


def where_measured(placement: Placement | None) -> dict[str, Any]:
    """What the run records about where it ran: the placement, the CPU, the affinity while measuring, the GPUs."""
    record: dict[str, Any] = {"cpu": cpu_model(), "affinity": affinity()}
    if placement is not None:
        record |= placement.as_dict()
    record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return record


def record_placement(measured: Measured, placement: Placement | None, record: dict[str, Any]) -> Measured:
    """``measured`` with ``record`` in ``benchmark.json``'s device section, and ``contended`` in its device tag."""
    device = dict(measured.summary.get("device", {})) | {"placement": record}
    summary = dict(measured.summary) | {"device": device}
    tag = measured.device
    if placement is not None and placement.contended:
        tag = f"{tag} | contended: {placement.why_contended}"
    return replace(measured, summary=summary, device=tag)
