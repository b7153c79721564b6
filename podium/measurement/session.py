"""Measure a model on a backend under a config: the numbers, ``benchmark.json`` and the device tag."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podium.backends.base import InferenceBackend, ServerStats
from podium.backends.factory import make_backend
from podium.backends.inputs import build_inputs, plan_batches
from podium.backends.test_data import load_token_rows
from podium.core.config import BenchmarkConfig
from podium.core.metric_names import server_metrics, summary_metrics
from podium.measurement.artifacts import ModelSource, fetch
from podium.measurement.lengths import length_profile
from podium.measurement.loop import BatchMeasurement, Clock, Progress, measure_batch
from podium.tracking.tracker import MlflowTracking


@dataclass(frozen=True)
class Measured:
    """What a measurement produced: MLflow metrics, the ``benchmark.json`` summary, the hardware measured on."""

    metrics: Mapping[str, float]
    summary: Mapping[str, Any]
    device: str
    #: Per batch size, e.g. ``b1:stable,b8:unstable``.
    stability: str = ""


def run_measurement(
    backend: InferenceBackend,
    config: BenchmarkConfig,
    *,
    progress: Progress | None = None,
    clock: Clock = time.perf_counter_ns,
    config_hash: str | None = None,
    model_file: Path | None = None,
) -> Measured:
    """Measure every batch size, cycling through the planned requests (test data in a fixed order, or one
    synthetic batch). ``model_file``: where a tokenizer stored with the model is looked for."""
    cfg = config.benchmarking
    specs = backend.prepare()
    rows = load_token_rows(cfg.test_data, cfg.tokenizer, model_file) if cfg.test_data else None
    metrics: dict[str, float] = {}
    per_batch: dict[str, Any] = {}
    stability = []
    for b in cfg.batch_sizes:
        plan = plan_batches(rows, b, cfg.max_length, cfg.padding, cfg.seed)
        call = cycle([backend.bind(build_inputs(specs, b, p.width, p.rows, cfg.seed)) for p in plan])
        snapshots: list[ServerStats | None] = []
        m = measure_batch(
            call, b, cfg, clock, progress, on_measure_start=lambda taken=snapshots: taken.append(backend.stats())
        )
        after = backend.stats()
        metrics |= summary_metrics(m.summary, m.stable)
        lengths = (
            length_profile(plan, m.samples_ns, m.first_used, cfg.padding)
            if rows
            else {"padding": cfg.padding, "source": "synthetic", "max_tokens": cfg.max_length}
        )
        per_batch[str(b)] = _batch_entry(m) | {"lengths": lengths}
        server = _server_breakdown(snapshots[0] if snapshots else None, after, m)
        if server:
            metrics |= server_metrics(b, *server)
            per_batch[str(b)]["server"] = dict(
                zip(("queue_ms", "compute_ms", "client_overhead_ms"), server, strict=True)
            )
        stability.append(f"b{b}:{'stable' if m.stable else 'unstable'}")
    hardware = backend.describe()
    summary = {
        "schema_version": 1,
        "timestamp": datetime.now(UTC).isoformat(),
        "device": dict(hardware.details) | {"summary": hardware.summary},
        "config": config.model_dump(mode="json"),
        "benchmark_config_hash": config_hash,
        "inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs],
        "batches": per_batch,
        "notes": backend.notes() + _padding_notes(cfg.padding, rows),
    }
    return Measured(metrics, summary, hardware.summary, ",".join(stability))


def cycle(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One call that makes the given requests in turn: call ``k`` (from 0) is ``calls[k % len(calls)]``."""
    if len(calls) == 1:
        return calls[0]
    following = itertools.cycle(calls).__next__
    return lambda: following()()


def _padding_notes(padding: str, rows: list[list[int]] | None) -> list[str]:
    if padding == "longest" and not rows:
        return ["padding: longest without test_data: every synthetic sequence is max_length long"]
    return []


def _batch_entry(m: BatchMeasurement) -> dict[str, Any]:
    return {
        **m.summary.as_dict(),
        "stable": m.stable,
        "flags": m.flags,
        "windows": [{"p50_ms": w.p50_ms, "throughput_per_s": w.throughput_per_s, "cv": w.cv} for w in m.windows],
    }


def _server_breakdown(before: ServerStats | None, after: ServerStats | None, m: BatchMeasurement):
    """Triton statistics are cumulative: diff the snapshots around the measured windows."""
    if before is None or after is None or after.count <= before.count:
        return None
    n = after.count - before.count
    queue = (after.queue_ns - before.queue_ns) / n / 1e6
    compute = (after.compute_ns - before.compute_ns) / n / 1e6
    client_mean = sum(w.mean_ms * w.count for w in m.windows) / sum(w.count for w in m.windows)
    return queue, compute, max(0.0, client_mean - queue - compute)


def measure_model(
    config: BenchmarkConfig,
    source: ModelSource,
    tracking: MlflowTracking | None,
    *,
    url: str | None = None,
    model_name: str | None = None,
    model_version: str = "",
    progress: Progress | None = None,
    config_hash: str | None = None,
    deployment_name: str | None = None,
) -> Measured:
    """Fetch the model if the backend needs a file, build the backend, measure, tear down.

    The triton backend serves ``model_name`` (or ``triton.model_name``) when given; otherwise it uploads the
    model file as ``triton.deploy`` under ``deployment_name`` (unique to the benchmark_key, so workers sharing
    a server never collide) and unloads it afterwards, also when the measurement fails."""
    cfg = config.benchmarking
    on_server = model_name or cfg.triton.model_name
    needs_file = cfg.backend == "local" or (cfg.backend == "triton" and not on_server)
    with tempfile.TemporaryDirectory(prefix="podium-model-") as tmp:
        model_file = fetch(source, tracking, Path(tmp)) if needs_file else None
        name = deployment_name or f"podium-{(source.run_id or Path(str(model_file)).stem)[:24]}"
        backend = make_backend(
            cfg,
            model_file=model_file,
            url=url,
            model_name=model_name,
            model_version=model_version,
            deployment_name=name,
        )
        try:
            return run_measurement(backend, config, progress=progress, config_hash=config_hash, model_file=model_file)
        finally:
            backend.close()
