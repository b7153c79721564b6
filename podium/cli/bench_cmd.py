"""``podium bench``: benchmark one model now, on the local runtime or a Triton/KServe V2 server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from podium.cli.adopt import adopt_run
from podium.cli.common import (
    ArtifactPathOption,
    BenchmarkConfigOption,
    ConcurrencyOption,
    InputsOption,
    RequestRateOption,
    TrackingUriOption,
    console,
    fail,
    input_list,
    int_list,
    podium_errors,
)
from podium.core.backend_registry import BACKENDS, FORMATS, format_of_path
from podium.core.choices import Padding, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from podium.core.config import BenchmarkConfig
    from podium.core.records import Champion
    from podium.measurement.artifacts import ModelSource
    from podium.measurement.measure import Measured
    from podium.tracking.tracker import MlflowTracking


def bench(
    run_id: Annotated[str | None, typer.Option(help="MLflow run holding the model (refit or trial run)")] = None,
    model_uri: Annotated[str | None, typer.Option(help="runs:/<run_id>/<path>, file:///path or a path")] = None,
    backend: Annotated[str | None, typer.Option(help=f"Override benchmarking.backend: {', '.join(BACKENDS)}")] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Triton/KServe V2 server, e.g. 127.0.0.1:8000 (gRPC :8001; env PODIUM_TRITON_URL)"),
    ] = None,
    protocol: Annotated[Protocol | None, typer.Option(help="Override benchmarking.protocol")] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Model already in the server's repository (else the model is deployed)")
    ] = None,
    model_version: Annotated[str, typer.Option(help="Model version on the server (default: latest)")] = "",
    config: BenchmarkConfigOption = None,
    batch_sizes: Annotated[str | None, typer.Option(help="Override benchmarking.batch_sizes, e.g. 1,8,32")] = None,
    iterations: Annotated[int | None, typer.Option(help="Override benchmarking.iterations")] = None,
    device: Annotated[str | None, typer.Option(help="Override benchmarking.device (cpu|cuda)")] = None,
    inputs: InputsOption = None,
    test_data: Annotated[
        Path | None, typer.Option(help="Override benchmarking.test_data: JSONL of token id lists or texts")
    ] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Override benchmarking.tokenizer: a tokenizer.json")] = None,
    padding: Annotated[
        Padding | None, typer.Option(help="Override benchmarking.padding: max_length or longest (per batch)")
    ] = None,
    model_format: Annotated[
        str | None, typer.Option(help=f"Override benchmarking.model_format: {' or '.join(FORMATS)}")
    ] = None,
    artifact_path: ArtifactPathOption = None,
    concurrency: ConcurrencyOption = None,
    request_rate: RequestRateOption = None,
    sla_p99_ms: Annotated[
        float | None, typer.Option(help="p99 budget (ms): report the highest load-level throughput meeting it")
    ] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the MLflow benchmark run")] = True,
    tracking_uri: TrackingUriOption = None,
    out: Annotated[Path, typer.Option(help="Folder for benchmark.json")] = Path("."),
) -> None:
    """Measure a model's inference latency now: warm-up, windows until stable, percentiles per batch
    size. With --log (default) the run is logged to MLflow and an existing benchmark of the same
    benchmark_key is reused (run.mode)."""
    if run_id is not None and model_uri is not None:
        fail("give one of --run-id and --model-uri, not both")
    spec = BACKENDS.get(backend or "")  # None: the config's backend (or an unknown name, refused below)
    on_server = model_name is not None and (spec is None or spec.model_file != "always")
    if run_id is None and model_uri is None and not on_server:
        fail("give the model: --run-id RUN or --model-uri URI (or --model-name for a model already on a server)")
    from podium.settings.env import PodiumSettings, worker_name

    settings = PodiumSettings()
    with podium_errors():
        from podium.measurement.artifacts import ModelSource, parse_model_uri
        from podium.settings.files import load_benchmark_config
        from podium.tracking.tracker import MlflowTracking

        cfg = load_benchmark_config(config, settings.config_dir).with_overrides(
            backend=backend,
            protocol=protocol,
            device=device,
            iterations=iterations,
            batch_sizes=int_list(batch_sizes, "--batch-sizes"),
            inputs=input_list(inputs, "--inputs"),
            test_data=test_data,
            tokenizer=tokenizer,
            padding=padding,
            model_format=model_format or format_of_path(model_uri or artifact_path),
        )
        cfg = with_load(cfg, int_list(concurrency, "--concurrency"), rate_list(request_rate), sla_p99_ms)
        if run_id:
            from podium.core.records import ARTIFACT_PATHS

            source = ModelSource(run_id, artifact_path or ARTIFACT_PATHS[cfg.benchmarking.model_format], None)
        elif model_uri:
            source = parse_model_uri(model_uri)
        else:
            source = ModelSource(None, None, None)
        if log and source.run_id is None:
            fail("--log needs the model's MLflow run: use --run-id or a runs:/ URI, or pass --no-log")
        tracking = None
        if source.run_id is not None:
            tracking = MlflowTracking.from_settings(settings, tracking_uri=tracking_uri, create=False)
        champion = None
        if run_id and tracking is not None:  # a run of podium's helpers, or a plain MLflow run adopted as it is
            champion, source, cfg = adopt_run(tracking, run_id, cfg, source, artifact_path, log, model_format)
        elif log and tracking and source.run_id:
            champion = tracking.champion(source.run_id)
        measured = _measure(
            cfg,
            source,
            tracking,
            url or settings.triton_url,  # as the error of a missing address says, and as podium tune reads it
            model_name,
            model_version,
            champion,
            worker=settings.worker_name or worker_name(),
            write_back_on=settings.write_back,
        )
    if measured is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / cfg.output.filename
    path.write_text(json.dumps(measured.summary, indent=2))
    _print_table(measured, cfg)
    console.print(f"Wrote {path}")


def rate_list(value: str | None) -> list[float] | None:
    """``50,100`` as request rates, or one line (exit 2) naming the option."""
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        fail(f"--request-rate must be comma-separated requests per second such as 50,100, got {value!r}")


def with_load(
    cfg: BenchmarkConfig, concurrency: list[int] | None, rates: list[float] | None, sla_p99_ms: float | None
) -> BenchmarkConfig:
    """``cfg`` with the command line's load levels and p99 budget in ``benchmarking.load`` (validated there)."""
    given = {"concurrency": concurrency, "request_rate": rates, "sla_p99_ms": sla_p99_ms}
    if all(v is None for v in given.values()):
        return cfg
    load = cfg.benchmarking.load.model_dump() | {k: v for k, v in given.items() if v is not None}
    return cfg.with_overrides(load=load)


def _measure(
    cfg: BenchmarkConfig,
    source: ModelSource,
    tracking: MlflowTracking | None,
    url: str | None,
    model_name: str | None,
    model_version: str,
    champion: Champion | None,
    worker: str,
    write_back_on: bool = True,
) -> Measured | None:
    from podium.core.run_tags import identity_for
    from podium.measurement.lifecycle import benchmark_champion
    from podium.measurement.measure import measure_model
    from podium.settings.files import config_hash_of

    config_hash = config_hash_of(cfg)

    def measure(config: BenchmarkConfig, _champion: Champion | None = None) -> Measured:
        with _progress() as progress:
            tasks: dict[tuple[int, str], TaskID] = {}

            def update(batch: int, phase: str, done: int, total: int) -> None:
                key = (batch, phase)
                if key not in tasks:
                    tasks[key] = progress.add_task(f"batch {batch} {phase}", total=total)
                progress.update(tasks[key], completed=done, total=total)

            return measure_model(
                config,
                source,
                tracking,
                url=url,
                model_name=model_name,
                model_version=model_version,
                progress=update,
                config_hash=config_hash,
            )

    if champion is None or tracking is None:
        return measure(cfg)
    outcome = benchmark_champion(
        champion, cfg, tracking, measure, worker=worker, identity=identity_for(champion, config_hash)
    )
    if outcome.status == "reused":
        console.print(
            f"Reused: benchmark {outcome.benchmark_key[:16]}… is already FINISHED in run {outcome.run_id} "
            f"(matched by {outcome.via}). Set run.mode: force_new to measure again."
        )
        return None
    console.print(f"Logged MLflow run {outcome.run_id} (benchmark_key {outcome.benchmark_key[:16]}…)")
    if outcome.measured is not None and write_back_on:
        from podium.tracking.write_back import source_runs, write_back

        write_back(
            tracking,
            source_runs(champion.run_id, champion.trial_key_hash),
            outcome.measured.metrics,
            cfg.benchmarking.batch_sizes,
            benchmark_run_id=outcome.run_id,
            benchmark_key=outcome.benchmark_key,
            stability=outcome.measured.stability,
            backend=cfg.benchmarking.backend,
        )
    return outcome.measured


def _progress() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _print_table(measured: Measured, cfg: BenchmarkConfig) -> None:
    table = Table(title=f"{measured.device}")
    for col in ("batch", "mean ms", "p50", "p90", "p95", "p99", "std", "samples", "items/s", "quality"):
        table.add_column(col, justify="left" if col in ("quality",) else "right")
    for b, entry in measured.summary["batches"].items():
        table.add_row(
            b,
            *(f"{entry[k]:.3f}" for k in ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "std_ms")),
            str(entry["count"]),
            f"{entry['throughput_per_s']:.1f}",
            ", ".join(entry["flags"]) or "stable",
        )
    console.print(table)
    if cfg.benchmarking.test_data is not None:
        for b, entry in measured.summary["batches"].items():
            console.print(f"batch {b}: {lengths_line(entry['lengths'])}")
    if "load" in measured.summary:
        _print_load(measured.summary["load"])
    for note in measured.summary["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def _print_load(load: dict) -> None:
    table = Table(title=f"load levels (batch {load['batch_size']}, client {load['client']})")
    cols = ("level", "items/s", "achieved/s", "p50", "p90", "p95", "p99", "queue", "compute", "overhead", "quality")
    for col in cols:
        table.add_column(col, justify="left" if col in ("level", "quality") else "right")
    for name, lv in load["levels"].items():
        server = lv.get("server") or {}
        table.add_row(
            name,
            f"{lv['throughput_per_s']:.1f}",
            f"{lv['achieved_per_s']:.1f}" if "achieved_per_s" in lv else "-",
            *(f"{lv[k]:.3f}" for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")),
            *(f"{server[k]:.3f}" if k in server else "-" for k in ("queue_ms", "compute_ms", "client_overhead_ms")),
            ", ".join(lv["flags"]) or "stable",
        )
    console.print(table)
    sla = load.get("sla")
    if sla:
        where = sla["met_level"] or "no level"
        towards = f", interpolated towards {sla['interpolated_towards']}" if sla["interpolated_towards"] else ""
        console.print(f"throughput at p99 <= {sla['p99_ms']:g} ms: {sla['throughput_per_s']:.1f}/s ({where}{towards})")


def lengths_line(profile: dict) -> str:
    """One line of what was timed: the tokens per sequence, the padded lengths, p50 by length quartile."""
    padded = profile["padded_to"]
    quartiles = ", ".join(
        f"{q['tokens'][0]}-{q['tokens'][1]}: {q['p50_ms']:.3f}" for q in profile.get("by_length_quartile", [])
    )
    return (
        f"{profile['sequences']} sequences, tokens p50 {profile['p50_tokens']:g} / p90 {profile['p90_tokens']:g} / "
        f"max {profile['max_tokens']}; padded ({profile['padding']}) to {padded['min']}-{padded['max']} over "
        f"{padded['distinct_batches']} distinct batches; p50 ms by tokens {quartiles}"
    )
