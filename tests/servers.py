"""Real servers for tests: started on free 127.0.0.1 ports, stopped by PID.

A missing server binary skips the test locally; with ``PODIUM_REQUIRE_SERVERS=1`` (CI) it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from podium.coordination.embedded import free_port, redis_server_command

HERE = Path(__file__).resolve().parent
MLSERVER_VERSION = "1.7.1"
MLSERVER_VENV = Path(
    os.environ.get("PODIUM_MLSERVER_VENV", Path.home() / ".cache" / "podium" / f"mlserver-{MLSERVER_VERSION}")
)
REQUIRE = os.environ.get("PODIUM_REQUIRE_SERVERS") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (PODIUM_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if finished:
                return
            time.sleep(0.05)


def stop_all(processes: Iterable[ServerProcess], timeout: float = 10.0) -> None:
    """Stop several servers at once: SIGTERM every process group first, then wait for each (and SIGKILL what is
    left after ``timeout``), so their shutdowns overlap instead of adding up."""
    todo = list(processes)
    for p in todo:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in todo:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        p.stop()  # SIGKILL after its own wait if still there; reaps, closes the log


def cached_venv(venv: Path, *installs: list[str], cwd: Path | None = None) -> Path:
    """A venv built once (under a file lock, for parallel sessions) in which each of ``installs`` was run as
    ``pip install ARGS``, in order; a failed build skips the test locally and fails it in CI. Returns ``venv``."""
    marker = venv / ".podium-ok"
    if marker.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        steps = [[sys.executable, "-m", "venv", str(venv)]]
        steps += [
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *a]
            for a in installs
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800, cwd=cwd)
            if done.returncode != 0:
                unavailable(f"cannot build the venv {venv} ({' '.join(step[-3:])}): {done.stderr[-800:]}")
        marker.touch()
    return venv


def ensure_mlserver_venv() -> Path:
    """MLServer in its own venv (its pins clash with podium's), built once and cached."""
    return cached_venv(MLSERVER_VENV, [f"mlserver=={MLSERVER_VERSION}", "uvloop<0.22"]) / "bin" / "mlserver"


@dataclass
class ServerProcess:
    """A server we started: its process and log, stopped by PID."""

    proc: subprocess.Popen
    log_file: object
    folder: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log_file.close()  # type: ignore[attr-defined]


def wait_ready(process: ServerProcess, ready, what: str, timeout: float) -> None:
    """Until ``ready()`` holds (connection errors count as not yet); fail with the server's log when it exits
    or does not get there within ``timeout`` seconds (it is stopped then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            log = process.log()
            process.stop()
            pytest.fail(f"{what} exited with {process.proc.returncode}:\n{log}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    log = process.log()
    process.stop()
    pytest.fail(f"{what} did not become ready in {timeout:g} s:\n{log}")


def spawn(cmd: list[str], folder: Path, **kwargs) -> ServerProcess:
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed by ServerProcess.stop
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    return ServerProcess(proc, log, folder)


@dataclass
class MLServer:
    process: ServerProcess
    http: str  # host:port
    grpc: str

    def stop(self) -> None:
        self.process.stop()


def start_mlserver(tmp: Path) -> MLServer:
    binary = ensure_mlserver_venv()
    repo = tmp / "repo"
    shutil.copytree(HERE / "mlserver" / "repo", repo)
    http, grpc, metrics = free_port(), free_port(), free_port()
    (repo / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http,
                "grpc_port": grpc,
                "metrics_port": metrics,
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(HERE / "mlserver")}
    process = spawn([str(binary), "start", str(repo)], tmp, cwd=repo, env=env)
    server = MLServer(process, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}")

    def ready() -> bool:
        url = f"http://{server.http}/v2/models/{{}}/ready"
        return all(urllib.request.urlopen(url.format(m), timeout=1).status == 200 for m in ("sleepy", "echo"))

    wait_ready(process, ready, "MLServer", 90)
    return server


@dataclass
class RedisServer:
    process: ServerProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()


def start_redis(
    tmp: Path, port: int | None = None, extra: list[str] | None = None, ping: bytes = b"PING\r\n"
) -> RedisServer:
    """A real redis-server on 127.0.0.1 (no persistence), in the foreground so its PID is ours."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    process = spawn(redis_server_command(binary, port, tmp, extra), tmp)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(ping)
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH", b"-WRONGPASS")):
                    return RedisServer(process, port)
        except OSError:
            time.sleep(0.05)
    log = process.log()
    process.stop()
    pytest.fail(f"redis-server did not start on port {port}:\n{log}")


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False): a wait on an event, with
    a deadline only as a guard against hanging forever."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
