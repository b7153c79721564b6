"""The load levels of a benchmark (``benchmarking.load``): each level measured, then its metrics, its
``benchmark.json`` entry and the throughput at the p99 budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.backends.base import InferenceBackend, InputSpec
from podium.backends.inputs import build_inputs, plan_batches
from podium.core.config import BenchmarkingSection
from podium.core.metric_names import LOAD_SLA, THROUGHPUT_AT_SLA, load_level_name, load_metric
from podium.core.sla import LoadPoint, best_at_sla
from podium.measurement.load import LevelResult, level_snapshots, run_level
from podium.measurement.load_clients import slot_senders


@dataclass(frozen=True)
class LoadMeasured:
    metrics: dict[str, float]
    #: ``benchmark.json``'s ``load``: the levels by name, the client used, the throughput at the budget.
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def measure_levels(
    backend: InferenceBackend,
    cfg: BenchmarkingSection,
    specs: Sequence[InputSpec],
    rows: list[list[int]] | None = None,
) -> LoadMeasured:
    """Every closed-loop level, then every open-loop one, on ``backend`` (prepared), at ``load.batch_size``."""
    load = cfg.load
    b = load.batch_size
    plan = [
        build_inputs(specs, b, p.width, p.rows, cfg.seed) for p in plan_batches(rows, b, cfg.max_length, cfg.padding)
    ]
    levels: list[LevelResult] = []
    clients: set[str] = set()
    asked = [(c, None) for c in load.concurrency or []] + [(None, r) for r in load.request_rate or []]
    for concurrency, rate in asked:
        name = load_level_name(concurrency, rate)
        slots = slot_senders(backend, plan, concurrency or load.max_in_flight)
        clients.add(slots.client)
        start, end = level_snapshots(backend, own_client=slots.client != "bind")
        try:
            levels.append(run_level(slots.senders, b, cfg, rate=rate, level=name, snapshot=start, finish_snapshot=end))
        finally:
            slots.close()
    return summarize_levels(levels, load.sla_p99_ms, sorted(clients), b)


def summarize_levels(
    levels: Sequence[LevelResult], sla_p99_ms: float | None, clients: list[str], batch_size: int
) -> LoadMeasured:
    """Metrics named by level (``load_c4_p99_ms``), the ``benchmark.json`` entry, and with a budget the highest
    throughput meeting it (0 when no level does, said in the notes)."""
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for lv in levels:
        s = lv.summary
        m = {
            "throughput_per_s": s.throughput_per_s,
            "mean_ms": s.mean_ms,
            "p50_ms": s.p50_ms,
            "p90_ms": s.p90_ms,
            "p95_ms": s.p95_ms,
            "p99_ms": s.p99_ms,
            "samples": float(s.count),
            "stable": 1.0 if lv.stable else 0.0,
            "client_cpu_ms": lv.client_cpu_ms,
        }
        if lv.achieved_per_s is not None:
            m |= {"achieved_per_s": lv.achieved_per_s, "late_share": lv.late_share or 0.0}
        if lv.server:
            m |= dict(zip(("server_queue_ms", "server_compute_ms", "client_overhead_ms"), lv.server, strict=True))
        metrics |= {load_metric(lv.level, k): v for k, v in m.items()}
        if "late_sends" in lv.flags:
            notes.append(
                f"load {lv.level}: {lv.late_share:.0%} of requests were sent over 1 ms late (achieved "
                f"{lv.achieved_per_s:.1f}/s of {lv.asked:g}/s): every thread was busy (raise "
                "benchmarking.load.max_in_flight) or the host woke them late (read host load)"
            )
    summary: dict[str, Any] = {
        "batch_size": batch_size,
        "client": ",".join(clients),
        "levels": {lv.level: lv.as_dict() for lv in levels},
    }
    if sla_p99_ms is not None:
        curves = [
            [LoadPoint(lv.level, lv.summary.throughput_per_s, lv.summary.p99_ms) for lv in levels if lv.mode == mode]
            for mode in ("concurrency", "request_rate")
        ]
        found = best_at_sla(curves, sla_p99_ms)
        metrics[THROUGHPUT_AT_SLA] = found.throughput_per_s if found else 0.0
        metrics[LOAD_SLA] = sla_p99_ms
        summary["sla"] = {
            "p99_ms": sla_p99_ms,
            "throughput_per_s": found.throughput_per_s if found else 0.0,
            "met_level": found.met_level if found else None,
            "interpolated_towards": found.towards if found else None,
        }
        if found is None:
            notes.append(f"no load level met the p99 budget of {sla_p99_ms:g} ms: throughput_at_sla_per_s is 0")
    return LoadMeasured(metrics, summary, notes)
