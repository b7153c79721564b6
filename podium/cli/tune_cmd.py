"""``podium tune``: search a model's Triton serving configs for the highest throughput at a p99 budget."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from podium.cli.adopt import adopt_run
from podium.cli.bench_cmd import rate_list, with_load
from podium.cli.common import (
    ArtifactPathOption,
    BenchmarkConfigOption,
    ConcurrencyOption,
    InputsOption,
    IterationsOption,
    RequestRateOption,
    TrackingUriOption,
    console,
    fail,
    input_list,
    int_list,
    podium_errors,
)
from podium.core.backend_registry import format_of_path
from podium.core.choices import Protocol

if TYPE_CHECKING:
    from celery import Celery

    from podium.core.config import BenchmarkConfig
    from podium.core.tuning import SearchSpace, ServingConfig
    from podium.measurement.artifacts import ModelSource
    from podium.measurement.tune import ConfigOutcome, TuneOutcome, TuneRuns
    from podium.settings.env import PodiumSettings
    from podium.tracking.tracker import MlflowTracking

Mode = Literal["quick", "exhaustive"]
SWITCHES = {"on": True, "off": False}


def switch_list(value: str, option: str) -> list[bool]:
    """``off,on`` as booleans, or one line (exit 2) naming the option."""
    try:
        return [SWITCHES[part.strip().lower()] for part in value.split(",")]
    except KeyError:
        fail(f"{option} must be comma-separated on/off such as on,off, got {value!r}")


def tune(
    run_id: Annotated[str | None, typer.Option(help="MLflow run holding the model (refit or trial run)")] = None,
    model_uri: Annotated[str | None, typer.Option(help="runs:/<run_id>/<path>, file:///path or a path")] = None,
    url: Annotated[
        str | None, typer.Option(help="Triton server in explicit model-control mode (env PODIUM_TRITON_URL)")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Spread the configs over the workers of queue podium.<target>, each on its own Triton server "
            "(instead of --url)"
        ),
    ] = None,
    protocol: Annotated[Protocol | None, typer.Option(help="Override benchmarking.protocol")] = None,
    name: Annotated[
        str | None, typer.Option(help="The model's name in the winner's config.pbtxt (default podium-<run>)")
    ] = None,
    config: BenchmarkConfigOption = None,
    inputs: InputsOption = None,
    artifact_path: ArtifactPathOption = None,
    instance_count: Annotated[str, typer.Option(help="Instance counts to try, e.g. 1,2,4")] = "1,2",
    max_batch_size: Annotated[str, typer.Option(help="max_batch_size values to try, e.g. 1,8,32")] = "8",
    dynamic_batching: Annotated[
        str, typer.Option(help="Dynamic batching on, off, or both: on,off (quick mode starts from the first)")
    ] = "on,off",
    max_queue_delay_us: Annotated[
        str, typer.Option(help="Dynamic batcher's max_queue_delay_microseconds to try, e.g. 0,100")
    ] = "0",
    mode: Annotated[Mode, typer.Option(help="quick: coordinate descent; exhaustive: every config")] = "quick",
    concurrency: ConcurrencyOption = None,
    request_rate: RequestRateOption = None,
    sla_p99_ms: Annotated[float | None, typer.Option(help="p99 budget (ms) the winner's throughput is read at")] = None,
    iterations: IterationsOption = None,
    server_pid: Annotated[
        int | None, typer.Option(help="The server's PID for its memory (default: the process on the URL's port)")
    ] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the search to MLflow (parent + child runs)")] = True,
    tracking_uri: TrackingUriOption = None,
    out: Annotated[Path, typer.Option(help="Folder for tune.json and the winner's config.pbtxt")] = Path("."),
) -> None:
    """Deploy each serving config (instance count, max_batch_size, dynamic batching, queue delay) of one model
    to Triton, run the load levels, unload, and pick the highest throughput at the p99 budget. The winner's
    config.pbtxt is written to --out (and to the MLflow parent run with --log)."""
    if (run_id is None) == (model_uri is None):
        fail("give the model: one of --run-id RUN and --model-uri URI")
    from podium.settings.env import PodiumSettings

    settings = PodiumSettings()
    if target is not None and url is not None:
        fail("give one of --url (tune on that server) and --target (on the servers of that queue's workers)")
    url = None if target else url or settings.triton_url
    if not url and not target:
        fail("podium tune needs a Triton server: pass --url HOST:PORT (or set PODIUM_TRITON_URL), or --target T")
    with podium_errors():
        from podium.core.tuning import SearchSpace
        from podium.measurement.tune import TuneRuns

        cfg = _config(config, settings, protocol, iterations, inputs, model_uri or artifact_path)
        levels = (int_list(concurrency, "--concurrency"), rate_list(request_rate))
        if levels == (None, None) and not cfg.benchmarking.load.any:
            levels = ([1, 2, 4, 8], None)  # the default levels
        cfg = with_load(cfg, *levels, sla_p99_ms)
        if cfg.benchmarking.load.sla_p99_ms is None:
            fail("podium tune ranks configs by throughput at a p99 budget: pass --sla-p99-ms (e.g. 50)")
        space = SearchSpace(
            tuple(int_list(instance_count, "--instance-count") or ()),
            tuple(int_list(max_batch_size, "--max-batch-size") or ()),
            tuple(switch_list(dynamic_batching, "--dynamic-batching")),
            tuple(int_list(max_queue_delay_us, "--max-queue-delay-us") or ()),
        )
        if target and run_id is None and not (model_uri or "").startswith("runs:/"):
            fail(
                "--target sends the model to workers that read it from MLflow: give --run-id RUN or a runs:/ URI "
                "(a path is on this host only), or tune on one server with --url"
            )
        app = _queue_app(settings, target) if target else None  # no worker: said before anything is written
        source, tracking, cfg = _model(settings, run_id, model_uri, artifact_path, cfg, tracking_uri, log)
        bench = cfg.benchmarking
        model_name = name or f"podium-{(source.run_id or Path(model_uri or 'model').stem)[:24]}"
        runs = None
        if log and tracking is not None:
            tags = {
                "code.tune.model_run_id": source.run_id or "",
                "code.tune.mode": mode,
                "code.tune.sla_p99_ms": f"{bench.load.sla_p99_ms:g}",
            }
            if target:
                tags["code.tune.target"] = target
            runs = TuneRuns(tracking, tags, f"tune {model_name}")
        names = [f"c{c}" for c in bench.load.concurrency or []] + [f"r{r:g}" for r in bench.load.request_rate or []]
        console.print(
            f"Tuning {model_name} ({mode}, {len(space.configs())} configs in the grid) at levels "
            f"{','.join(names)}, p99 <= {bench.load.sla_p99_ms:g} ms"
        )
        if app is not None and target:
            try:
                result = _tune_over_workers(app, settings.redis_url, target, cfg, source, model_name, space, mode, runs)
            finally:
                app.close()
        else:
            assert url is not None
            result = _tune_on_server(url, server_pid, cfg, source, tracking, model_name, space, mode, runs)
    _report(result, out)


def _tune_on_server(
    url: str,
    server_pid: int | None,
    cfg: BenchmarkConfig,
    source: ModelSource,
    tracking: MlflowTracking | None,
    model_name: str,
    space: SearchSpace,
    mode: str,
    runs: TuneRuns | None,
) -> TuneOutcome:
    """Every config on the server at ``url``, one after another, the model fetched here."""
    from podium.backends.triton import deployment, host_port
    from podium.measurement.artifacts import fetch_model
    from podium.measurement.server_memory import find_server_at
    from podium.measurement.tune import TuneTarget, tune

    bench = cfg.benchmarking
    memory, why = find_server_at(host_port(url, bench.protocol), server_pid)
    if why:
        console.print(f"[yellow]note:[/] {why}")
    with tempfile.TemporaryDirectory(prefix="podium-tune-") as tmp:
        model_file, _ = fetch_model(source, tracking, Path(tmp), bench)
        server = TuneTarget(
            url, bench.protocol, bench.request_timeout_s, deployment(bench, model_file, model_name), memory
        )
        return tune(server, bench, space, mode, runs=runs, on_start=_started, on_done=_done)


def _queue_app(settings: PodiumSettings, target: str) -> Celery:
    """The broker's app, once a worker of ``podium.<target>`` answered (else one line saying how to start them)."""
    from podium.broker.app import create_app
    from podium.coordination import keys
    from podium.errors import BrokerUnavailable
    from podium.measurement.tune_spread import queue_workers

    app = create_app(settings)
    queue = keys.queue(target)
    try:
        workers, too_old = queue_workers(app, queue)
    except BrokerUnavailable as exc:
        app.close()
        fail(str(exc))
    if too_old:
        console.print(f"[yellow]note:[/] {', '.join(too_old)} run a podium without tune tasks: upgrade them")
    if not workers:
        app.close()
        fail(
            f"no worker that runs tune tasks consumes {queue} now: start them with `podium worker --target "
            f"{target} --triton-url HOST:PORT` (one per GPU, each with its server), or tune on one server with --url"
        )
    console.print(f"Spreading the configs over {len(workers)} worker(s) of {queue}: {', '.join(workers)}")
    return app


def _tune_over_workers(
    app: Celery,
    redis_url: str,
    target: str,
    cfg: BenchmarkConfig,
    source: ModelSource,
    model_name: str,
    space: SearchSpace,
    mode: str,
    runs: TuneRuns | None,
) -> TuneOutcome:
    """Every step's configs at once, one task each, over the workers of ``podium.<target>``; each worker fetches
    the model and measures on its own server."""
    import uuid

    from podium.coordination.connection import connect
    from podium.measurement.tune import tune_with
    from podium.measurement.tune_spread import over_workers
    from podium.settings.files import input_fingerprint

    assert source.run_id is not None  # checked before anything was written
    model = {
        "model_run_id": source.run_id,
        "artifact_path": source.artifact_path,
        "model_name": model_name,
        "input_fingerprint": input_fingerprint(cfg.benchmarking),
    }
    client = connect(redis_url)
    try:
        measure = over_workers(app, client, target, cfg, model, uuid.uuid4().hex, on_sent=_sent)
        return tune_with(measure, model_name, cfg.benchmarking, space, mode, runs=runs, on_done=_done)
    finally:
        client.close()


def _config(
    config: Path | None,
    settings: PodiumSettings,
    protocol: str | None,
    iterations: int | None,
    inputs: str | None,
    model_path: str | None,
) -> BenchmarkConfig:
    """benchmark.yaml with the command line's overrides, on the triton backend, deploying the model itself."""
    from podium.settings.files import load_benchmark_config

    cfg = load_benchmark_config(config, settings.config_dir).with_overrides(
        backend="triton",
        protocol=protocol,
        iterations=iterations,
        inputs=input_list(inputs, "--inputs"),
        model_format=format_of_path(model_path),
    )
    if cfg.benchmarking.triton.deploy == "none":
        fail("podium tune uploads each config itself: set benchmarking.triton.deploy to libtorch, python or onnx")
    return cfg


def _model(
    settings: PodiumSettings,
    run_id: str | None,
    model_uri: str | None,
    artifact_path: str | None,
    cfg: BenchmarkConfig,
    tracking_uri: str | None,
    log: bool,
) -> tuple[ModelSource, MlflowTracking | None, BenchmarkConfig]:
    """Where the model is (a plain MLflow run's found as ``podium bench`` finds it) and the store it is in."""
    from podium.core.records import ARTIFACT_PATHS
    from podium.measurement.artifacts import ModelSource, parse_model_uri
    from podium.tracking.tracker import MlflowTracking

    if run_id:
        source = ModelSource(run_id, artifact_path or ARTIFACT_PATHS[cfg.benchmarking.model_format], None)
    else:
        source = parse_model_uri(model_uri or "")
    if log and source.run_id is None:
        fail("--log needs the model's MLflow run: use --run-id or a runs:/ URI, or pass --no-log")
    if source.run_id is None:
        return source, None, cfg
    tracking = MlflowTracking.from_settings(settings, tracking_uri=tracking_uri, create=False)
    if run_id:
        _, source, cfg = adopt_run(tracking, run_id, cfg, source, artifact_path, False, None)
    return source, tracking, cfg


def _sent(i: int, serving: ServingConfig) -> None:
    console.print(f"[{i}] {serving.label}: sent to the queue")


def _started(i: int, serving: ServingConfig) -> None:
    console.print(f"[{i}] {serving.label}: deploying and measuring ...")


def _done(i: int, outcome: ConfigOutcome) -> None:
    t = outcome.trial
    if t.error:
        console.print(f"[{i}] {t.config.label}: [red]failed[/] ({t.error})")
        return
    figure = f"{t.throughput_at_sla:.1f}/s at the budget" if t.meets_sla else "no level met the budget"
    memory = outcome.metrics.get("memory_host_rss_mb")
    extra = f", server RSS {memory:.0f} MiB" if memory is not None else ""
    console.print(f"[{i}] {t.config.label}: {figure} ({outcome.seconds:.1f} s{extra})")


def _report(result: TuneOutcome, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps(result.table, indent=2))
    (out / "config.pbtxt").write_text(result.winner_pbtxt)
    table = Table(title=f"serving configs ({result.table['mode']}, p99 <= {result.table['sla_p99_ms']:g} ms)")
    for col in ("config", "items/s at budget", "met at", "server RSS MiB", "model RSS MiB", "s"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for row in result.table["configs"]:
        won = row["label"] == result.table["winner"]
        tp = row["throughput_at_sla_per_s"]
        table.add_row(
            f"{row['label']}{' *' if won else ''}",
            "failed" if row["error"] else f"{tp:.1f}" if tp is not None else "-",
            row["met_level"] or "-",
            *(f"{row[k]:.0f}" if k in row else "-" for k in ("memory_host_rss_mb", "memory_model_rss_mb")),
            f"{row['seconds']:.1f}",
        )
    console.print(table)
    console.print(
        f"Winner: {result.table['winner']} ({result.table['measured']} of {result.table['grid_size']} configs "
        f"measured); wrote {out / 'tune.json'} and {out / 'config.pbtxt'}"
    )
    if result.parent_run_id:
        console.print(f"Logged MLflow run {result.parent_run_id} (config.pbtxt, tune.json; one child run per config)")
