"""The ``triton`` backend against a real KServe V2 server (MLServer 1.7.1), over HTTP and gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podium.backends.factory import make_backend
from podium.backends.inputs import build_inputs
from podium.backends.triton import TritonBackend
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.demo.model import TinyTagger, export
from podium.errors import BackendError
from podium.measurement.loop import measure_batch
from podium.measurement.measure import run_measurement
from tests.servers import MLServer, free_port, start_mlserver, wait_until

SLEEP_MS = 5.0
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory):
    server = start_mlserver(tmp_path_factory.mktemp("mlserver"))
    yield server
    server.stop()


def url(server: MLServer, protocol: str) -> str:
    return server.http if protocol == "http" else server.grpc


def config(**benchmarking) -> BenchmarkConfig:
    base = {
        "backend": "triton",
        "iterations": 40,
        "warmup_iterations": 5,
        "max_length": 16,
        "stability": {"max_windows": 4},
    }
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_known_service_time_is_measured(mlserver: MLServer, protocol: str) -> None:
    """Every request of a model busy for 5 ms takes 5 ms at least (nothing skipped, units right from below), and
    one client's requests fit in the wall time of the windows they were sent in (units right from above, nothing
    counted twice), however busy the host. How close the figure comes to a bare tritonclient loop is a speed
    figure: bench/triton_overhead.py measures it."""
    backend = TritonBackend(url(mlserver, protocol), "sleepy", protocol=protocol)
    try:
        call = backend.bind(build_inputs(backend.prepare(), 1, 16))
        m = measure_batch(call, 1, config(protocol=protocol).benchmarking).summary
    finally:
        backend.close()
    assert m.min_ms >= SLEEP_MS and m.count >= 40, m
    # one request at a time: the mean latency is at most the windows' wall time per request
    assert m.mean_ms <= 1000 / m.throughput_per_s * (1 + 1e-9), m


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_full_measurement_and_clean_degradation(mlserver: MLServer, protocol: str) -> None:
    backend = TritonBackend(url(mlserver, protocol), "sleepy", protocol=protocol)
    try:
        measured = run_measurement(backend, config(protocol=protocol, batch_sizes=[1, 4]))
    finally:
        backend.close()
    assert measured.metrics["latency_batch_1_p50_ms"] >= SLEEP_MS
    assert measured.metrics["latency_batch_4_samples"] >= 120
    assert "latency_batch_1_server_queue_ms" not in measured.metrics  # MLServer has no statistics
    notes = " ".join(measured.summary["notes"])
    assert "server statistics unavailable" in notes and "client-side figures only" in notes
    if protocol == "http":
        assert "binary_data=False" in notes
    assert measured.summary["device"]["server"] == "mlserver"
    assert "mlserver 1.7.1" in measured.device
    assert measured.summary["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_not_loaded(mlserver: MLServer, protocol: str) -> None:
    backend = TritonBackend(url(mlserver, protocol), "ghost", protocol=protocol)
    with pytest.raises(BackendError, match=rf"model 'ghost' \(version latest\) not ready on {protocol}://127.0.0.1"):
        backend.prepare()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_down_fails_fast(protocol: str) -> None:
    backend = TritonBackend(f"127.0.0.1:{free_port()}", "sleepy", protocol=protocol, timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=rf"server liveness check on {protocol}://127.0.0.1:\d+ failed"):
        backend.prepare()
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_request_timeout_is_an_error_not_a_hang(mlserver: MLServer, protocol: str) -> None:
    backend = TritonBackend(url(mlserver, protocol), "slow", protocol=protocol, timeout_s=0.5)
    specs = backend.prepare()
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="a first request to model 'slow'"):
        backend.bind(build_inputs(specs, 1, 4))
    assert time.monotonic() - t0 < 5
    # the server finished the slow request once it answers again (it serves one request at a time)
    assert wait_until(lambda: backend._model_ready(), timeout=30)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_deploy_through_model_control_degrades_with_a_reason(mlserver: MLServer, protocol: str, tmp_path: Path) -> None:
    model = export(TinyTagger(16, 1), tmp_path / "model.pt")
    backend = make_backend(
        config(protocol=protocol, triton={"deploy": "python"}).benchmarking,
        model_file=model,
        url=url(mlserver, protocol),
        deployment_name="podium-tiny",
    )
    try:
        with pytest.raises(
            BackendError, match=r"refused to load model 'podium-tiny' deployed as python.*MLServer does not"
        ):
            backend.prepare()
    finally:
        backend.close()


def test_podium_bench_cli_on_a_server_model(mlserver: MLServer, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "podium",
            "bench",
            "--backend",
            "triton",
            "--url",
            mlserver.grpc,
            "--protocol",
            "grpc",
            "--model-name",
            "sleepy",
            "--no-log",
            "--iterations",
            "30",
            "--batch-sizes",
            "1,2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(doc["batches"]) == {"1", "2"}
    assert doc["batches"]["1"]["p50_ms"] >= SLEEP_MS
    assert doc["config"]["benchmarking"]["protocol"] == "grpc"
    assert "mlserver" in out.stdout
