"""Load levels against a real ``tritonserver`` (the pytriton wheel's binary; CPU, Python backend): closed and open
loop through podium's lean clients, HTTP and gRPC, with the server's queue/compute split."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podium.backends.triton import TritonBackend
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.measurement.measure import run_measurement
from tests.triton import TritonServer, busy_model, logged_waits, start_triton

pytestmark = pytest.mark.server
MODEL = "busy2"
SLEEPY = "sleepy10"


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    tmp = tmp_path_factory.mktemp("triton-load")
    busy_model(tmp / "models", MODEL, 2.0)  # one instance: a second request in flight waits in the queue
    # one instance that sleeps its service time: a busy core stretches neither it nor, by much, the client's turn
    busy_model(tmp / "models", SLEEPY, 10.0, sleep=True)
    server = start_triton(tmp, load=[MODEL, SLEEPY])
    yield server
    server.stop()


def config(protocol: str, model: str = MODEL, **load) -> BenchmarkConfig:
    benchmarking = {
        "backend": "triton",
        "protocol": protocol,
        "iterations": 30,
        "warmup_iterations": 2,
        "max_length": 16,
        "stability": {"max_windows": 3},
        "triton": {"deploy": "none", "model_name": model},
        "load": load,
    }
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking}, "test")


def measure(triton: TritonServer, protocol: str, model: str = MODEL, **load):
    backend = TritonBackend(triton.url(protocol), model, protocol=protocol)
    logged = len(logged_waits(triton.repository / model / "waits.log"))
    try:
        measured = run_measurement(backend, config(protocol, model, **load), cpu=lambda: None)
    finally:
        backend.close()
    served = len(logged_waits(triton.repository / model / "waits.log")) - logged
    return measured, served


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_closed_loop_levels_with_the_server_split(triton: TritonServer, protocol: str) -> None:
    measured, served = measure(triton, protocol, SLEEPY, concurrency=[1, 2])
    load = measured.summary["load"]
    assert load["client"] == f"lean-{protocol}"
    c1, c2 = load["levels"]["c1"], load["levels"]["c2"]
    for level in (c1, c2):
        # every window of the level was measured and judged; the reported figures cover the last three
        assert len(level["windows"]) == 3 and level["count"] >= 3 * 30
        assert level["stable"] == ("unstable" not in level["flags"])
        assert level["server"]["compute_ms"] > 0 and level["server"]["client_overhead_ms"] >= 0
    # one model instance: with two requests in flight each waits in the server's queue for the other's service time
    # less the client's turn between its requests, with one it barely waits. The model sleeps its 10 ms, so a busy
    # core stretches only the client's turn (a busy-waiting 2 ms model left a slot idle often enough on a loaded
    # 2-core host that c2's queue was 0.17x of its compute, against c1's 0.12x; this one, with six busy loops on
    # the 2 cores: 0.8x against 0.002x)
    assert c2["server"]["queue_ms"] > max(0.1 * c2["server"]["compute_ms"], 2 * c1["server"]["queue_ms"])
    # the statistics settled on every request the lean client sent (no note that some were missed)
    assert not any("server statistics counted" in n for n in measured.summary["notes"])
    # the serial batch and both levels, every request served (the serial loop's bind adds its first call)
    serial = 1 + 2 + len(measured.summary["batches"]["1"]["windows"]) * 30
    assert served >= serial + c1["requests_after_warmup"] + c2["requests_after_warmup"]
    assert measured.metrics["load_c2_server_queue_ms"] == c2["server"]["queue_ms"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_open_loop_sends_at_the_asked_rate(triton: TritonServer, protocol: str) -> None:
    measured, _ = measure(triton, protocol, request_rate=[150], max_in_flight=4, sla_p99_ms=1000)
    level = measured.summary["load"]["levels"]["r150"]
    assert level["mode"] == "request_rate" and level["asked"] == 150
    # each window is one pass over the same seeded arrivals: sent on time, it lasts exactly 30 / 150 s. Its wall
    # time runs from its first send to its last, so with no send over 1 ms late it is within 1 ms of that (0.5 %
    # of a pass); a busy host that makes sends late must say so instead
    if level["late_share"] == 0:
        assert level["achieved_per_s"] == pytest.approx(150, rel=0.01)
    else:
        assert "late_sends" in level["flags"]  # one late send of the 90 is over the 1 % that flags it
    assert measured.metrics["load_r150_achieved_per_s"] == level["achieved_per_s"]
    assert measured.summary["load"]["sla"]["met_level"] == "r150"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_the_server_refuses_fails_the_level_in_one_line(triton: TritonServer, protocol: str) -> None:
    import numpy as np

    from podium.errors import BackendError
    from podium.measurement.load_clients import slot_senders

    backend = TritonBackend(triton.url(protocol), MODEL, protocol=protocol)
    try:
        backend.prepare()
        wrong = {"input_ids": np.zeros((1, 16), dtype=np.float32)}  # the model takes INT64
        slots = slot_senders(backend, [wrong], 2)
        try:
            with pytest.raises(BackendError, match=f"model '{MODEL}' on {protocol}://127.0.0.1:") as raised:
                slots.senders[0]()
        finally:
            slots.close()
    finally:
        backend.close()
    assert "FP32" in str(raised.value) and "\n" not in str(raised.value)
