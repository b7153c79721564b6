"""A worker's warm-up: every runtime it serves imported and run once, failures reported, never raised."""

from __future__ import annotations

import sys

import fakeredis

from podium.coordination import keys
from podium.coordination.workers import WorkerPresence, ready_workers
from podium.workers import warmup
from podium.workers.warmup import Warmed, runtimes_loaded, warm_runtimes


def test_the_warm_up_runs_a_tiny_inference_on_torch_and_onnxruntime() -> None:
    warmed = warm_runtimes(triton_url=None)
    assert warmed.failed == []
    assert [w.split(" ")[0] for w in warmed.done] == ["torchscript", "onnx"]
    assert {"torch", "onnxruntime"} <= runtimes_loaded()
    assert "torch" in sys.modules and "podium.workers.deps" in sys.modules
    assert warmed.line().startswith("torchscript (torch ") and warmed.line().endswith(" s")


def test_a_runtime_that_cannot_warm_is_reported_not_raised(monkeypatch) -> None:
    def broken() -> str:
        raise RuntimeError("no such runtime\nsecond line")

    monkeypatch.setattr(warmup, "_warm_onnx", broken)
    warmed = warm_runtimes(triton_url=None)
    assert warmed.failed == ["onnx"] and len(warmed.done) == 1
    assert "onnx (not warmed)" in warmed.line()


def test_an_unreachable_triton_is_reported_in_the_ready_line() -> None:
    warmed = warm_runtimes(triton_url="127.0.0.1:1", timeout_s=1)
    assert "triton" in warmed.failed


def test_the_ready_line_names_what_was_warmed() -> None:
    assert Warmed(["a"], ["b"], 1.25).line() == "a, b (not warmed) in 1.2 s"
    assert Warmed().line() == "no runtime in 0.0 s"


def test_a_worker_announces_itself_and_withdraws() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    presence = WorkerPresence(client, "host:1", {"warmed": "torchscript"})
    assert presence.announce()
    assert 0 < client.ttl(keys.worker("host:1")) <= 60
    assert [w["name"] for w in ready_workers(client)] == ["host:1"]
    assert ready_workers(client)[0]["warmed"] == "torchscript"
    presence.stop()
    assert ready_workers(client) == []
