"""Measure a model on a backend under a config: the numbers, ``benchmark.json`` and the device tag."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.backends.base import InferenceBackend, ServerStats
from podium.backends.factory import make_backend, needs_model_file
from podium.backends.inputs import build_inputs, plan_batches
from podium.core.backend_registry import BackendSpec, backend_spec, format_spec
from podium.core.clock import Timer
from podium.core.config import BenchmarkConfig
from podium.core.metric_names import TUNED_THROUGHPUT_AT_SLA, host_metrics, server_metrics, summary_metrics
from podium.measurement.artifacts import ModelSource, fetch_model
from podium.measurement.cpu_load import Sampler, host_sampler
from podium.measurement.input_data import load_token_rows
from podium.measurement.lengths import length_profile
from podium.measurement.loop import BatchMeasurement, Progress, measure_batch
from podium.measurement.memory import MemoryProbe, probe_for
from podium.tracking.tracker import MlflowTracking

if TYPE_CHECKING:
    from podium.measurement.tune import SearchRecord, ServerTurn


@dataclass(frozen=True)
class Measured:
    """What a measurement produced: MLflow metrics, the ``benchmark.json`` summary, the hardware measured on."""

    metrics: Mapping[str, float]
    summary: Mapping[str, Any]
    device: str
    #: Per batch size, e.g. ``b1:stable,b8:unstable,b32:contended``.
    stability: str = ""
    #: The serving-config search the request asked for (``benchmarking.tune``), run after the benchmark.
    search: SearchRecord | None = None


def run_measurement(
    backend: InferenceBackend,
    config: BenchmarkConfig,
    *,
    progress: Progress | None = None,
    clock: Timer = time.perf_counter_ns,
    config_hash: str | None = None,
    model_file: Path | None = None,
    cpu: Callable[[], Sampler | None] = host_sampler,
    memory: MemoryProbe | None = None,
) -> Measured:
    """Measure every batch size, each window making whole passes over the planned requests (test data in a fixed
    order, or one synthetic batch). ``model_file``: where a tokenizer stored with the model is looked for.
    ``cpu`` builds the sampler of the contention check (None: the host load is not read). ``memory``: how the
    model's memory is read (default: as the backend runs it, :mod:`podium.measurement.memory`)."""
    cfg = config.benchmarking
    if memory is None:
        runtime = format_spec(cfg.model_format).requires[0]
        memory = probe_for(backend, backend_spec(cfg.backend), runtime, cfg.protocol)
    memory.start()
    specs = backend.prepare()
    rows = load_token_rows(cfg.test_data, cfg.tokenizer, model_file) if cfg.test_data else None
    metrics: dict[str, float] = {}
    per_batch: dict[str, Any] = {}
    stability = []
    sampler = cpu()
    # Contended windows are discarded only where the model runs in this process (the backend's registry entry
    # says): a server's work is others' to the readings, and a synthetic request is a sleep a busy host does not slow.
    in_process = backend_spec(cfg.backend).in_process
    for b in cfg.batch_sizes:
        plan = plan_batches(rows, b, cfg.max_length, cfg.padding, cfg.seed)
        calls = [backend.bind(build_inputs(specs, b, p.width, p.rows, cfg.seed)) for p in plan]
        snapshots: list[ServerStats | None] = []
        m = measure_batch(
            calls,
            b,
            cfg,
            clock,
            progress,
            on_measure_start=_snapshot_into(snapshots, backend),
            sampler=sampler,
            discard_contended=in_process,
        )
        after = backend.stats()
        metrics |= summary_metrics(m.summary, m.stable)
        metrics |= host_metrics(b, m.host.share if m.host else None, m.spread.cv if m.spread else None)
        lengths = (
            length_profile(plan, m.samples_ns, 0, cfg.padding)
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
        stability.append(f"b{b}:{'contended' if m.contended else 'stable' if m.stable else 'unstable'}")
    levels = None
    if cfg.load.any:  # load levels (issue 22): their own module; here only their metrics and summary join in
        from podium.measurement.load_session import measure_levels

        levels = measure_levels(backend, cfg, specs, rows)
        metrics |= levels.metrics
    used = memory.finish()
    metrics |= used.metrics
    hardware = backend.describe()
    summary: dict[str, Any] = {
        "schema_version": 1,
        "timestamp": datetime.now(UTC).isoformat(),
        "device": dict(hardware.details) | {"summary": hardware.summary},
        "config": config.model_dump(mode="json"),
        "benchmark_config_hash": config_hash,
        "inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs],
        "batches": per_batch,
        "notes": backend.notes()
        + _padding_notes(cfg.padding, rows)
        + _load_notes(sampler, backend_spec(cfg.backend))
        + used.notes,
        "memory": used.summary,
    }
    if levels is not None:
        summary["load"] = levels.summary
        summary["notes"] += levels.notes
    return Measured(metrics, summary, hardware.summary, ",".join(stability))


def _load_notes(sampler: Sampler | None, spec: BackendSpec) -> list[str]:
    if sampler is None:
        return ["host load not read (no /proc/stat): windows taken while others used the CPU are not discarded"]
    return [spec.contention_note] if spec.contention_note else []


def _padding_notes(padding: str, rows: list[list[int]] | None) -> list[str]:
    if padding == "longest" and not rows:
        return ["padding: longest without test_data: every synthetic sequence is max_length long"]
    return []


def _batch_entry(m: BatchMeasurement) -> dict[str, Any]:
    windows = []
    for w, load, discarded in zip(m.windows, m.contention, m.discarded, strict=True):
        window = {"p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "throughput_per_s": w.throughput_per_s, "cv": w.cv}
        if load is not None:
            window["host_contention"] = load.share
            window["host_contention_timing"] = load.timing
        windows.append(window | ({"discarded": "contended"} if discarded else {}))
    return {
        **m.summary.as_dict(),
        "stable": m.stable,
        "contended": m.contended,
        "flags": m.flags,
        # the spread of repeats of the same request (the input mix taken out); ``cv`` above includes the mix
        "noise_cv": m.spread.cv if m.spread else None,
        "host_contention": m.host.share if m.host else None,
        # how far that share can be off because a reading's instant is known only within its call
        "host_contention_timing": m.host.timing if m.host else None,
        "window_requests": m.window_requests,
        "windows": windows,
    }


def _snapshot_into(taken: list[ServerStats | None], backend: InferenceBackend) -> Callable[[], None]:
    """What runs as the measured windows begin: a snapshot of the server's (cumulative) statistics."""
    return lambda: taken.append(backend.stats())


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
    server_turn: ServerTurn | None = None,
) -> Measured:
    """Fetch the model if the backend needs a file, build the backend, measure, tear down; then the serving-config
    search ``benchmarking.tune`` asks for, each config within ``server_turn()`` (workers sharing a server).

    The triton backend serves ``model_name`` (or ``triton.model_name``) when given; otherwise it uploads the
    model file as ``triton.deploy`` under ``deployment_name`` (unique to the benchmark_key, so workers sharing
    a server never collide) and unloads it afterwards, also when the measurement fails."""
    cfg = config.benchmarking
    needs_file = needs_model_file(backend_spec(cfg.backend), cfg, model_name)
    with tempfile.TemporaryDirectory(prefix="podium-model-") as tmp:
        model_file, conversion = fetch_model(source, tracking, Path(tmp), cfg) if needs_file else (None, None)
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
            measured = run_measurement(
                backend, config, progress=progress, config_hash=config_hash, model_file=model_file
            )
        finally:
            backend.close()
        if cfg.tune is not None and model_file is not None and url:  # after the unload: its memory is gone
            from podium.measurement.tune import search_after_benchmark

            turn = server_turn or contextlib.nullcontext
            measured = with_search(measured, search_after_benchmark(cfg, model_file, url, name, progress, turn))
        return with_conversion(measured, conversion)


def with_search(measured: Measured, search: SearchRecord) -> Measured:
    """The measurement with the search that followed it: its table in ``benchmark.json`` (``tune``), the
    winner's throughput at the budget as a metric."""
    summary = dict(measured.summary) | {"tune": search.table}
    metrics = dict(measured.metrics)
    if search.winner is not None and search.winner.trial.throughput_at_sla is not None:
        metrics[TUNED_THROUGHPUT_AT_SLA] = search.winner.trial.throughput_at_sla
    if search.error:
        summary["notes"] = [*summary.get("notes", []), f"serving-config search: {search.error}"]
    return replace(measured, metrics=metrics, summary=summary, search=search)


def with_conversion(measured: Measured, conversion: str | None) -> Measured:
    """The measurement with how its model was made from the run's (a traced or exported nn.Module) noted in
    ``benchmark.json`` (``notes`` and ``model_conversion``); the run's tag is written from the latter."""
    if not conversion:
        return measured
    summary = dict(measured.summary)
    summary["notes"] = [*summary.get("notes", []), f"model: {conversion}"]
    summary["model_conversion"] = conversion
    return replace(measured, summary=summary)
