"""``podium demo``: the whole system on embedded defaults, in one command.

A local Redis (redis-server, else fakeredis), a sqlite MLflow store under ``.podium/demo``, two
``podium worker`` processes and one ``podium aggregator`` process (all stopped by PID on the way out,
Ctrl-C included), an Optuna study whose completion hook enqueues each benchmark, and a live view.
Running it again resumes the trained study and every benchmark is reused by ``benchmark_key``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.live import Live

from podium.broker.app import create_app
from podium.coordination import keys
from podium.coordination.connection import connect
from podium.coordination.embedded import LocalRedis
from podium.coordination.subscriber import subscribe
from podium.core.config import BenchmarkConfig, SelectionConfig
from podium.core.messages import BestModelUpdate
from podium.core.state import select_all
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.demo.study import DemoStudy, demo_study_hash
from podium.demo.view import DemoState, Request, render
from podium.errors import DemoError
from podium.producers.hooks import BenchmarkHook
from podium.settings.env import PodiumSettings
from podium.tracking.tracker import MlflowTracking

#: The demo's measurement settings: enough samples to be honest, small enough for a 2-core machine.
DEMO_BENCHMARK = {
    "batch_sizes": [1, 8],
    "iterations": 40,
    "warmup_iterations": 10,
    "max_length": 64,
    "device": "cpu",
    "stability": {"max_windows": 5},
}
#: The demo runs on whatever machine it is given, often a busy one: its results compete even when in doubt
#: (marked unstable or contended everywhere), so the flow is shown end to end; a real deployment keeps the
#: default, where only clean results compete.
DEMO_SELECTION = {"selection": {"include_unstable": True}}


@dataclass
class DemoOptions:
    home: Path = Path(".podium/demo")
    trials: int = 8
    train_seconds: float = 2.0
    workers: int = 2
    seed: int = 0
    live: bool = True
    timeout_s: float = 600.0


@dataclass
class DemoResult:
    measured: int
    reused: int
    failed: int
    best: BestModelUpdate | None
    tracking_uri: str
    seconds: float


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bench = parse_model(BenchmarkConfig, {"benchmarking": DEMO_BENCHMARK}, "demo")
    for name, model in (
        ("benchmark.yaml", bench),
        ("best_model_selection.yaml", parse_model(SelectionConfig, DEMO_SELECTION, "demo")),
        ("tags.yaml", TagsRegistry()),
    ):
        (folder / name).write_text(yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return folder


class Processes:
    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env = logs, env
        self.procs: list[tuple[str, subprocess.Popen, object]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all()
        proc = subprocess.Popen(
            [sys.executable, "-m", "podium", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc, log))

    def check(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")

    def stop_all(self) -> None:
        """SIGTERM each process group (a worker and its pool processes), then SIGKILL what is left of it, and of
        every process descended from them (one in a session of its own is in no group of ours)."""
        descendants = _descendants({proc.pid for _, proc, _ in self.procs})
        for _, proc, _ in self.procs:
            _signal_group(proc, signal.SIGTERM)
        for _, proc, log in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            _signal_group(proc, signal.SIGKILL)  # pool processes a stalled parent left behind too
            if proc.poll() is None:
                proc.wait(timeout=5)
            log.close()  # type: ignore[attr-defined]
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _descendants(roots: set[int]) -> set[int]:
    """Every live process below ``roots`` (read from /proc; empty where there is none)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Ctrl-C (SIGINT) held back until the block is done, then raised: every process it starts is recorded first,
    so the demo's clean-up stops it (CI found an aggregator left running by a Ctrl-C mid-start)."""
    held: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    except ValueError:  # not the main thread: nothing to hold back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Each process was started in its own session: its PID is its process group's."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_demo(opts: DemoOptions, console: Console) -> DemoResult:
    home = opts.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    config_dir = write_config(home / "config")
    # the demo owns its store: it exists before any process opens it (podium's services never create one)
    tracking = MlflowTracking.connect(tracking_uri, TagsRegistry(), create=True)
    redis_server = LocalRedis(home / "redis").start()
    env = {
        **os.environ,
        "PODIUM_REDIS_URL": redis_server.url,
        "PODIUM_TRACKING_URI": tracking_uri,
        "PODIUM_CONFIG_DIR": str(config_dir),
        "PYTHONUNBUFFERED": "1",
        "PODIUM_REPORT_DIR": str(home / "reports"),
        "PODIUM_REPORT_EVERY_S": "5",
    }
    procs = Processes(home / "logs", env)
    state = DemoState(header=f"Redis: {redis_server.kind} at {redis_server.url}\nMLflow: {tracking_uri}")
    stop = threading.Event()
    t0 = time.monotonic()
    try:
        with _interrupt_after():  # a Ctrl-C between a process's start and its record would leave it running
            for i in range(opts.workers):
                procs.start(f"worker-{i + 1}", "worker", "--target", "cpu", "--loglevel", "WARNING")
            procs.start("aggregator", "aggregator")
        settings = PodiumSettings(redis_url=redis_server.url, tracking_uri=tracking_uri, config_dir=config_dir)
        app = create_app(settings)
        bench_cfg = parse_model(BenchmarkConfig, {"benchmarking": DEMO_BENCHMARK}, "demo")
        hook = BenchmarkHook(app, bench_cfg, tracking=tracking, redis=connect(redis_server.url))
        updates: queue.Queue[BestModelUpdate] = queue.Queue()
        threading.Thread(target=_follow, args=(redis_server.url, updates, stop), daemon=True).start()
        with Live(render(state), console=console, refresh_per_second=4, transient=False) as live:
            redraw = _redrawer(live, state, updates, stop, opts.live)
            state.phase = "starting workers"
            _wait_workers(app, opts.workers, procs, timeout=90)
            state.phase = "training (Optuna) and benchmarking as trials finish"

            def on_trial(number: int, params: dict, f1: float) -> None:
                note = "resumed from MLflow" if params.get("resumed") else "trained"
                state.trials.append((number, f"tiny-w{params['width']}-d{params['depth']}", f1, note))

            def on_enqueue(study, trial) -> None:  # the hook, and a line in the view
                sent = hook(study, trial)
                if sent:
                    backbone = f"tiny-w{trial.params.get('width')}-d{trial.params.get('depth')}"
                    state.requests.append(Request(trial.number, backbone, sent.benchmark_key, sent.task_id))

            DemoStudy(tracking_uri, home, opts.train_seconds, opts.seed, on_trial).run(opts.trials, [on_enqueue])
            state.phase = "waiting for the last benchmarks"
            _wait_results(app, state, procs, connect(redis_server.url), deadline=t0 + opts.timeout_s)
            state.phase = "waiting for the aggregator's final best"
            best = _wait_best(tracking, state, updates, deadline=t0 + opts.timeout_s, procs=procs)
            state.phase = "done"
            redraw()
        counts = {s: sum(r.status == s for r in state.requests) for s in ("measured", "reused", "failed")}
        return DemoResult(
            counts["measured"], counts["reused"], counts["failed"], best, tracking_uri, time.monotonic() - t0
        )
    finally:
        stop.set()
        procs.stop_all()
        redis_server.stop()


def _follow(url: str, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for update in subscribe(url, demo_study_hash(), stop=stop, poll_s=0.2):
            out.put(update)
    except Exception:  # the view is advisory; the result is checked against MLflow at the end
        return


def _redrawer(live: Live, state: DemoState, updates: queue.Queue, stop: threading.Event, enabled: bool):
    def redraw() -> None:
        while not updates.empty():
            u = updates.get_nowait()
            state.best[u.benchmark_config_hash] = u
        live.update(render(state))

    def loop() -> None:
        while not stop.wait(0.25):
            if enabled:
                redraw()

    threading.Thread(target=loop, daemon=True).start()
    return redraw


def _wait_workers(app, count: int, procs: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check()
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    raise DemoError(f"{count} workers did not start within {timeout:.0f} s")


def _wait_results(app, state: DemoState, procs: Processes, r, deadline: float) -> None:
    while True:
        pending = [q for q in state.requests if q.status in ("queued", "running")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"{len(pending)} benchmark(s) did not finish in time")
        procs.check()
        for q in pending:
            result = app.AsyncResult(q.task_id)
            if result.ready():
                value = result.get(propagate=False)
                q.status = value.get("status", "failed") if isinstance(value, dict) else "failed"
                q.detail = f"run {value.get('run_id', '')[:10]}" if isinstance(value, dict) else str(value)[:60]
                if q.status not in ("measured", "reused"):
                    q.status = "failed"
            else:
                beat = r.hgetall(keys.heartbeat(q.key))
                if beat:
                    q.status, q.detail = "running", f"{beat.get('phase', '')} {beat.get('progress', '')}".strip()
        time.sleep(0.3)


def _wait_best(
    tracking: MlflowTracking, state: DemoState, updates: queue.Queue, deadline: float, procs: Processes
) -> BestModelUpdate | None:
    """Until the published best equals what `podium select` computes from MLflow right now."""
    ids = tracking.experiment_ids()
    config = parse_model(SelectionConfig, DEMO_SELECTION, "demo")  # as written for the aggregator
    selections, _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), config)
    wanted = {s.benchmark_config_hash: s for s in selections if s.study_key_hash == demo_study_hash()}
    while time.monotonic() < deadline:
        procs.check()
        while not updates.empty():
            u = updates.get_nowait()
            state.best[u.benchmark_config_hash] = u
        if wanted and all(
            (u := state.best.get(cfg)) is not None
            and u.best is not None
            and (u.best.trial_key_hash, u.best.latency_ms) == (sel.best.trial_key_hash, sel.best.latency_ms)
            for cfg, sel in wanted.items()
        ):
            return state.best[next(iter(wanted))]
        time.sleep(0.2)
    if not wanted:
        return None
    raise DemoError("the aggregator did not publish the best model that MLflow holds in time")


def mlflow_ui_command(tracking_uri: str) -> str:
    exe = "mlflow" if shutil.which("mlflow") else "pip install mlflow && mlflow"
    return f"{exe} ui --backend-store-uri {tracking_uri} --port 5000"
