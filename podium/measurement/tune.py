"""``podium tune``'s measuring side: each serving config of one model deployed to Triton under a name of its own,
measured at the load levels, unloaded; the search (:mod:`podium.core.tuning`) decides which configs and the
winner. With a tracker, one MLflow parent run holds the search (its table as ``tune.json``, the winner's
``config.pbtxt``) and each config is a child run (tags naming the config, the load metrics, the memory).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from podium.backends.triton import Deployment, TritonBackend
from podium.backends.triton_deploy import to_pbtxt, with_serving
from podium.core.config import BenchmarkingSection
from podium.core.metric_names import THROUGHPUT_AT_SLA
from podium.core.tuning import WINNER_TAG, Search, SearchSpace, ServingConfig, Trial, search_many
from podium.errors import BackendError, TuningError
from podium.measurement.load_session import measure_levels
from podium.measurement.server_memory import ServerMemory

if TYPE_CHECKING:
    from pathlib import Path

    from podium.core.store import BenchmarkRuns
    from podium.measurement.loop import Progress

#: Memory metrics of a config (MiB): the server's processes after the levels, what loading the model added to
#: them, and the GPU memory they hold (NVML only).
HOST_RSS = "memory_host_rss_mb"
MODEL_RSS = "memory_model_rss_mb"
GPU_MEMORY = "memory_gpu_mb"
#: ``code.stage`` of tune runs: never read as benchmarks by selection.
TUNE_STAGE = "tune"
TAG = "code.tune."
#: How long an unloaded config may take to leave the server before the next one is loaded (s).
UNLOAD_WAIT_S = 60.0
#: The winner's Triton config, as an artifact of the search's parent run.
PBTXT = "config.pbtxt"


@dataclass(frozen=True)
class TuneTarget:
    """Where the configs are measured, and the model's own deployment (the config it was written with, its
    files), which each serving config rewrites."""

    url: str
    protocol: str
    timeout_s: float
    base: Deployment
    memory: ServerMemory | None = None


@dataclass
class ConfigOutcome:
    trial: Trial
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON (a worker's answer to a spread search)."""
        trial = self.trial
        return {
            "serving": trial.config.as_dict(),
            "throughput_at_sla": trial.throughput_at_sla,
            "error": trial.error,
            "config": self.config,
            "metrics": self.metrics,
            "summary": self.summary,
            "seconds": self.seconds,
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigOutcome:
        try:
            trial = Trial(ServingConfig(**data["serving"]), data["throughput_at_sla"], data["error"])
            return cls(
                trial,
                dict(data["config"]),
                {k: float(v) for k, v in data["metrics"].items()},
                dict(data["summary"]),
                float(data["seconds"]),
                str(data["device"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TuningError(f"a worker's answer is not a config outcome ({type(exc).__name__}: {exc})") from None

    def row(self) -> dict[str, Any]:
        sla = self.summary.get("sla") or {}
        return {
            "label": self.trial.config.label,
            **self.trial.config.as_dict(),
            "throughput_at_sla_per_s": self.trial.throughput_at_sla,
            "met_level": sla.get("met_level"),
            "error": self.trial.error,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            **{k: self.metrics[k] for k in (HOST_RSS, MODEL_RSS, GPU_MEMORY) if k in self.metrics},
        }


@dataclass
class TuneOutcome:
    search: Search
    outcomes: list[ConfigOutcome]
    #: The outcome of the config the search picked.
    winner: ConfigOutcome
    #: ``config.pbtxt`` of the winner, under the model's own name: ready to put in a model repository.
    winner_pbtxt: str
    table: dict[str, Any]
    parent_run_id: str | None = None


def deployment_for(base: Deployment, serving: ServingConfig, name: str) -> Deployment:
    """``base`` served as ``serving`` under ``name``."""
    config = with_serving(
        base.config | {"name": name},
        serving.instance_count,
        serving.max_batch_size,
        serving.dynamic_batching,
        serving.max_queue_delay_us,
    )
    return replace(base, config=config)


def measure_config(target: TuneTarget, serving: ServingConfig, cfg: BenchmarkingSection) -> ConfigOutcome:
    """Deploy ``serving`` (a name of its own: never a reload of the previous config), run the load levels, unload
    and wait until the server has let it go. A config the server refuses or that fails its levels is a failed
    trial, not an error of the search."""
    name = f"{target.base.config['name']}-{serving.label}"
    deployment = deployment_for(target.base, serving, name)
    memory = target.memory
    started = time.monotonic()
    before = memory.host_rss_mb() if memory else None
    running = memory.processes() if memory else set()
    backend = TritonBackend(target.url, name, "", target.protocol, target.timeout_s, deployment)
    outcome = ConfigOutcome(Trial(serving, None), deployment.config)
    try:
        specs = backend.prepare()
        levels = measure_levels(backend, cfg, specs)
        sla = levels.summary.get("sla") or {}
        outcome.trial = Trial(serving, sla.get("throughput_per_s") if sla.get("met_level") else None)
        outcome.metrics = dict(levels.metrics)
        if memory is not None and before is not None:
            after = memory.host_rss_mb()
            outcome.metrics |= {HOST_RSS: after, MODEL_RSS: after - before}
            gpu = memory.gpu_mb()
            if gpu is not None:
                outcome.metrics[GPU_MEMORY] = gpu
        outcome.device = backend.describe().summary
        outcome.summary = dict(levels.summary) | {"notes": backend.notes() + levels.notes}
    except BackendError as exc:
        outcome.trial = Trial(serving, None, error=str(exc))
        outcome.summary = {"error": str(exc), "notes": backend.notes()}
    finally:
        backend.close()
        left = wait_unloaded(target.url, target.protocol, name, target.timeout_s)
        if memory is not None:  # and its instances' processes gone: the next config's memory starts clean
            left = memory.wait_for_exit(running, UNLOAD_WAIT_S) and left
        if not left:
            outcome.summary.setdefault("notes", []).append(
                f"{name} was still loaded {UNLOAD_WAIT_S:g} s after its unload: the next config's memory may count it"
            )
    outcome.summary["serving_config"] = serving.as_dict() | {"label": serving.label}
    outcome.seconds = time.monotonic() - started
    return outcome


def wait_unloaded(url: str, protocol: str, name: str, timeout_s: float, wait_s: float = UNLOAD_WAIT_S) -> bool:
    """Wait until the server lists ``name`` among its loaded models no more (Triton unloads in the background,
    after the requests in flight); False when it still does after ``wait_s``."""
    from podium.backends.triton import host_port

    target = host_port(url, protocol)
    if protocol == "grpc":
        import tritonclient.grpc as mod

        client = mod.InferenceServerClient(url=target)
    else:
        import tritonclient.http as mod

        client = mod.InferenceServerClient(url=target, connection_timeout=timeout_s, network_timeout=timeout_s)
    deadline, pause = time.monotonic() + wait_s, 0.01
    try:
        while True:
            try:
                stats = client.get_inference_statistics()
            except Exception:  # a server without statistics: nothing to wait on
                return True
            if not isinstance(stats, dict):
                from google.protobuf.json_format import MessageToDict

                stats = MessageToDict(stats, preserving_proto_field_name=True)
            if name not in {m.get("name") for m in stats.get("model_stats", [])}:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
    finally:
        with contextlib.suppress(Exception):
            client.close()


class TuneRuns:
    """The MLflow side of a search: the parent run (one of its own, or the benchmark run a request's search
    followed), one child run per config."""

    def __init__(
        self, tracking: BenchmarkRuns, tags: dict[str, str], run_name: str, *, parent: str | None = None
    ) -> None:
        self.tracking = tracking
        self.stage = tracking.tags.stage.key
        self.tags = tags
        if parent is None:
            parent, _ = tracking.start_benchmark_run({self.stage: TUNE_STAGE, **tags}, run_name=run_name)
        self.parent = parent

    def child(self, outcome: ConfigOutcome) -> str:
        serving = outcome.trial.config
        tags = {
            self.stage: TUNE_STAGE,
            "mlflow.parentRunId": self.parent,
            **self.tags,
            f"{TAG}config": serving.label,
            **{f"{TAG}{k}": str(v).lower() for k, v in serving.as_dict().items()},
        }
        if outcome.device:
            tags[f"{TAG}device"] = outcome.device
        run_id, _ = self.tracking.start_benchmark_run(tags, run_name=serving.label)
        summary = outcome.summary | {"triton_config": outcome.config}
        self.tracking.record_results(run_id, outcome.metrics, summary, "tune_config.json")
        if outcome.trial.error:
            self.tracking.fail_run(run_id, outcome.trial.error)
        else:
            self.tracking.finish_run(run_id)
        return run_id

    def finish(self, result: TuneOutcome) -> None:
        winner = result.winner
        metrics = {THROUGHPUT_AT_SLA: winner.trial.throughput_at_sla or 0.0, "configs_measured": len(result.outcomes)}
        metrics |= {k: v for k, v in winner.metrics.items() if k.startswith("memory_")}
        tags = {WINNER_TAG: winner.trial.config.label, f"{TAG}winner_run_id": winner.run_id or ""}
        self.tracking.record_results(self.parent, metrics, result.table, "tune.json", extra_tags=tags)
        self.tracking.record_text(self.parent, result.winner_pbtxt, PBTXT)
        self.tracking.finish_run(self.parent)

    def fail(self, reason: str) -> None:
        self.tracking.fail_run(self.parent, reason)


#: Measures configs and gives their outcomes in the order asked, calling ``done`` with each as it is known: one
#: after another on one server (:func:`on_server`), or at once over a queue's workers
#: (:func:`podium.measurement.tune_spread.over_workers`).
ConfigMeasurer = Callable[[Sequence[ServingConfig], Callable[[ConfigOutcome], None]], list[ConfigOutcome]]


#: The server to oneself for one config's measurement (a Redis lock per server, taken and released), so workers
#: sharing a server never overlap their configs' load.
ServerTurn = Callable[[], AbstractContextManager[object]]


def on_server(
    target: TuneTarget,
    cfg: BenchmarkingSection,
    on_start: Callable[[int, ServingConfig], None] = lambda i, s: None,
    turn: ServerTurn = contextlib.nullcontext,
) -> ConfigMeasurer:
    """Each config measured on ``target``, one after another, each within ``turn()``."""
    started = 0

    def measure(configs: Sequence[ServingConfig], done: Callable[[ConfigOutcome], None]) -> list[ConfigOutcome]:
        nonlocal started
        outcomes = []
        for serving in configs:
            started += 1
            on_start(started, serving)
            with turn():
                outcome = measure_config(target, serving, cfg)
            done(outcome)
            outcomes.append(outcome)
        return outcomes

    return measure


def tune(
    target: TuneTarget,
    cfg: BenchmarkingSection,
    space: SearchSpace,
    mode: str,
    *,
    runs: TuneRuns | None = None,
    on_start: Callable[[int, ServingConfig], None] = lambda i, s: None,
    on_done: Callable[[int, ConfigOutcome], None] = lambda i, o: None,
    turn: ServerTurn = contextlib.nullcontext,
) -> TuneOutcome:
    """Search ``space`` in ``mode`` on one server, one config after another (each within ``turn()``)."""
    measure = on_server(target, cfg, on_start, turn)
    return tune_with(measure, target.base.config["name"], cfg, space, mode, runs=runs, on_done=on_done)


def tune_with(
    measure: ConfigMeasurer,
    model_name: str,
    cfg: BenchmarkingSection,
    space: SearchSpace,
    mode: str,
    *,
    runs: TuneRuns | None = None,
    on_done: Callable[[int, ConfigOutcome], None] = lambda i, o: None,
) -> TuneOutcome:
    """Search ``space`` in ``mode`` at the load levels and the p99 budget of ``cfg.load``; the winner's
    ``config.pbtxt`` names the model ``model_name``."""
    sla = cfg.load.sla_p99_ms
    if sla is None:
        raise TuningError("podium tune ranks configs by throughput at a p99 budget: pass --sla-p99-ms")
    if not cfg.load.any:
        raise TuningError("podium tune measures load levels: pass --concurrency (e.g. 1,2,4,8) or --request-rate")
    space.check_batch(cfg.load.batch_size)
    outcomes: list[ConfigOutcome] = []

    def done(outcome: ConfigOutcome) -> None:
        if runs is not None:
            outcome.run_id = runs.child(outcome)
        outcomes.append(outcome)
        on_done(len(outcomes), outcome)

    def measure_many(configs: Sequence[ServingConfig]) -> list[Trial]:
        return [outcome.trial for outcome in measure(configs, done)]

    try:
        found = search_many(space, mode, measure_many, sla)
        winner = next(o for o in outcomes if o.trial.config == found.winner.config)
        pbtxt = to_pbtxt(winner.config | {"name": model_name})
        table = {
            "mode": mode,
            "sla_p99_ms": sla,
            "load": cfg.load.model_dump(),
            "grid_size": len(space.configs()),
            "measured": len(outcomes),
            "winner": winner.trial.config.label,
            "configs": [o.row() for o in outcomes],
        }
        result = TuneOutcome(found, outcomes, winner, pbtxt, table)
        if runs is not None:
            runs.finish(result)
            result.parent_run_id = runs.parent
        return result
    except BaseException as exc:
        if runs is not None:
            runs.fail(f"{type(exc).__name__}: {exc}")
        raise


@dataclass(frozen=True)
class SearchRecord:
    """The search a benchmark request asked for (``benchmarking.tune``), run after its benchmark: every config's
    outcome, the table for ``benchmark.json``, the winner (None when no config met the budget: ``error`` says
    why; the configs measured are kept all the same)."""

    outcomes: list[ConfigOutcome]
    table: dict[str, Any]
    winner: ConfigOutcome | None
    winner_pbtxt: str | None
    error: str | None = None


def search_after_benchmark(
    cfg: BenchmarkingSection,
    model_file: Path,
    url: str,
    name: str,
    progress: Progress | None = None,
    turn: ServerTurn = contextlib.nullcontext,
) -> SearchRecord:
    """``cfg.tune``'s search on the server at ``url`` for the model in ``model_file`` (deployed as ``name``-<config>,
    each unloaded after its levels, each within ``turn()``); the winner's ``config.pbtxt`` names the model
    ``name``. ``progress`` hears of each config as it starts (a lost lock aborts there)."""
    from podium.backends.triton import deployment, host_port
    from podium.measurement.server_memory import find_server_at

    assert cfg.tune is not None
    space = cfg.tune.space()
    memory, why = find_server_at(host_port(url, cfg.protocol))
    target = TuneTarget(url, cfg.protocol, cfg.request_timeout_s, deployment(cfg, model_file, name), memory)
    total = len(space.configs())
    outcomes: list[ConfigOutcome] = []

    def started(i: int, serving: ServingConfig) -> None:
        if progress is not None:
            progress(cfg.load.batch_size, f"tuning {serving.label}", i - 1, total)

    try:
        result = tune(
            target, cfg, space, cfg.tune.mode, on_start=started, on_done=lambda i, o: outcomes.append(o), turn=turn
        )
    except TuningError as exc:  # no config met the budget, or every one failed: the benchmark still stands
        rows = [o.row() for o in outcomes]
        table: dict[str, Any] = {"mode": cfg.tune.mode, "measured": len(outcomes), "error": str(exc), "configs": rows}
        return SearchRecord(outcomes, table, None, None, str(exc))
    if why:
        result.table["notes"] = [why]
    return SearchRecord(outcomes, result.table, result.winner, result.winner_pbtxt)


def record_search(tracking: BenchmarkRuns, run_id: str, record: SearchRecord) -> dict[str, Any]:
    """Each config of a request's search as a child run of its benchmark run ``run_id``, and the winner's
    ``config.pbtxt`` as an artifact of that run; returns the search's table, its rows naming those runs."""
    runs = TuneRuns(tracking, {f"{TAG}mode": str(record.table.get("mode", ""))}, "", parent=run_id)
    for outcome in record.outcomes:
        outcome.run_id = runs.child(outcome)
    if record.winner_pbtxt is not None:
        tracking.record_text(run_id, record.winner_pbtxt, PBTXT)
    return record.table | {"configs": [o.row() for o in record.outcomes]}
