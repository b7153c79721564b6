"""A real ``tritonserver`` for tests: the binary shipped in the ``nvidia-pytriton`` wheel, installed once into
a cache folder, started in explicit model-control mode on free 127.0.0.1 ports, stopped by PID.

It runs on CPU here (Python backend only: no libtorch, no ONNX Runtime backend) and with CUDA on a GPU
machine. The venv's ``bin/`` goes first on ``PATH`` so the Python-backend stub imports the venv's numpy
and torch.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from podium.coordination.embedded import free_port
from tests.servers import ServerProcess, spawn, unavailable, wait_ready

PYTRITON_VERSION = "0.7.0"
TRITON_HOME = Path(
    os.environ.get("PODIUM_TRITON_HOME", Path.home() / ".cache" / "podium" / f"pytriton-{PYTRITON_VERSION}")
)
SERVER = TRITON_HOME / "pytriton" / "tritonserver"
WHEEL = f"nvidia-pytriton=={PYTRITON_VERSION}"


def ensure_tritonserver() -> Path:
    """The tritonserver binary, unpacked from the pytriton wheel (downloaded once with pip)."""
    marker = TRITON_HOME / ".podium-ok"
    if marker.exists():
        return SERVER / "bin" / "tritonserver"
    TRITON_HOME.mkdir(parents=True, exist_ok=True)
    with open(TRITON_HOME.parent / "pytriton.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return SERVER / "bin" / "tritonserver"
        wheels = TRITON_HOME / "wheel"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), WHEEL],
            capture_output=True,
            text=True,
            timeout=900,
        )
        found = sorted(wheels.glob("nvidia_pytriton-*.whl"))
        if done.returncode != 0 or not found:
            unavailable(f"cannot download nvidia-pytriton=={PYTRITON_VERSION}: {done.stderr[-500:]}")
        with zipfile.ZipFile(found[0]) as wheel:
            # the server and its shared libraries (found through its RPATH, $ORIGIN/../../../nvidia_pytriton.libs)
            members = [m for m in wheel.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
            wheel.extractall(TRITON_HOME, members)
        stub = SERVER / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
        target = SERVER / "backends" / "python" / "triton_python_backend_stub"
        shutil.copy(stub / "triton_python_backend_stub", target)
        for binary in (SERVER / "bin" / "tritonserver", target):
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        marker.touch()
    return SERVER / "bin" / "tritonserver"


@dataclass
class TritonServer:
    process: ServerProcess
    http_port: int
    grpc_port: int
    repository: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, protocol: str) -> str:
        return self.grpc if protocol == "grpc" else self.http

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def loaded_models(self) -> list[str]:
        """Models the server has loaded now (uploaded ones included, which the repository index omits)."""
        import json

        status, body = self.get("/v2/models/stats")
        assert status == 200, body
        return sorted({m["name"] for m in json.loads(body)["model_stats"]})

    def stop(self) -> None:
        self.process.stop()


def busy_model(repository: Path, name: str, busy_ms: float, max_batch_size: int = 8, *, sleep: bool = False) -> Path:
    """A Python-backend model that busy-waits ``busy_ms`` per request (a known service time), or with ``sleep``
    sleeps it (a service time a busy core barely stretches). It appends each request's actual wait (ms, wall clock)
    to the returned file: on a busy machine a preempted wait lasts longer than asked, and that longer time is what
    the server truly spent."""
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        'input [{ name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }]\n'
        'output [{ name: "scores" data_type: TYPE_FP32 dims: [ -1 ] }]\n'
        "instance_group [{ kind: KIND_CPU count: 1 }]\n"
        f'parameters: {{ key: "busy_ms" value: {{ string_value: "{busy_ms}" }} }}\n'
        f'parameters: {{ key: "log" value: {{ string_value: "{folder / "waits.log"}" }} }}\n'
        f'parameters: {{ key: "sleep" value: {{ string_value: "{int(sleep)}" }} }}\n'
    )
    (folder / "1" / "model.py").write_text(BUSY_MODEL)
    return folder / "waits.log"


def logged_waits(log: Path) -> list[float]:
    """The actual waits a :func:`busy_model` logged, oldest first (ms)."""
    return [float(line) for line in log.read_text().split()] if log.exists() else []


BUSY_MODEL = """\
import json
import time

import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.busy_s = float(parameters["busy_ms"]["string_value"]) / 1000
        self.log = parameters["log"]["string_value"]
        self.sleep = parameters["sleep"]["string_value"] == "1"

    def execute(self, requests):
        responses = []
        for request in requests:
            ids = torch.utils.dlpack.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input_ids").to_dlpack())
            start = time.perf_counter()
            end = start + self.busy_s
            if self.sleep:
                time.sleep(self.busy_s)
            while time.perf_counter() < end:
                pass
            waited = time.perf_counter() - start
            with open(self.log, "a") as log:
                log.write(f"{waited * 1000:.6f}\\n")
            scores = ids.to(torch.float32) * 0.5
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("scores", torch.utils.dlpack.to_dlpack(scores))])
            )
        return responses
"""


def start_triton(
    tmp: Path, load: list[str] | None = None, repository: Path | None = None, ports: tuple[int, int] | None = None
) -> TritonServer:
    """tritonserver on free 127.0.0.1 ports (or ``ports``: HTTP, gRPC) in explicit mode, ``load`` loaded at start;
    ready when it returns."""
    binary = ensure_tritonserver()
    tmp.mkdir(parents=True, exist_ok=True)
    repository = repository or tmp / "models"
    repository.mkdir(parents=True, exist_ok=True)
    http, grpc = ports or (free_port(), free_port())
    cmd = [
        str(binary),
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        f"--backend-directory={SERVER / 'backends'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        "--allow-metrics=false",
        "--log-verbose=0",
        *[f"--load-model={m}" for m in load or []],
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = TritonServer(spawn(cmd, tmp, env=env), http, grpc, repository)
    wait_ready(server.process, lambda: server.get("/v2/health/ready")[0] == 200, "tritonserver", 120)
    return server
