"""A statistics reading counts every request the backend had answered: Triton records a request after it
releases the response, so a reading in between would put that request's compute in the next window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("tritonclient.http")

from podium.backends.triton import TritonBackend


class LaggingServer:
    """A KServe V2 client double: each answered request is counted only after ``lag`` further readings."""

    def __init__(self, lag: int, served_before: int = 7):
        self.lag, self.count, self.pending = lag, served_before, []
        self.readings = 0

    def is_server_live(self, **_: Any) -> bool:
        return True

    def get_server_metadata(self, **_: Any) -> dict[str, Any]:
        return {"name": "triton", "version": "2.51.0", "extensions": ["statistics", "binary_tensor_data"]}

    def is_model_ready(self, *_: Any, **__: Any) -> bool:
        return True

    def get_model_metadata(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}]}

    def infer(self, *_: Any, **__: Any) -> str:
        self.pending.append(self.lag)
        return "answer"

    def get_inference_statistics(self, *_: Any, **__: Any) -> dict[str, Any]:
        self.readings += 1
        self.count += sum(1 for left in self.pending if left == 0)
        self.pending = [left - 1 for left in self.pending if left > 0]
        ns = {"ns": self.count * 1000}
        stats = {"success": {"count": self.count}, "queue": ns, "compute_input": ns, "compute_infer": ns}
        return {"model_stats": [{"inference_stats": stats | {"compute_output": ns}}]}

    def close(self) -> None:
        pass


def backend_on(server: LaggingServer) -> TritonBackend:
    backend = TritonBackend("127.0.0.1:1", "m")
    backend.client = server  # type: ignore[assignment]
    backend.prepare()
    return backend


def test_a_reading_waits_until_every_answered_request_is_counted() -> None:
    server = LaggingServer(lag=3)
    backend = backend_on(server)
    call = backend.bind({"input_ids": np.zeros((1, 4), dtype="int64")})
    for _ in range(4):
        call()
    taken = backend.stats()
    assert taken is not None and taken.count == 7 + 5  # served before, bind's first call and the four
    assert taken.compute_ns == taken.count * 3000
    assert backend.notes() == []


def test_other_clients_only_add_to_the_count() -> None:
    server = LaggingServer(lag=0)
    backend = backend_on(server)
    backend.bind({"input_ids": np.zeros((1, 4), dtype="int64")})
    server.count += 10  # somebody else's requests
    reads = server.readings
    assert backend.stats().count == 7 + 1 + 10
    assert server.readings == reads + 1  # nothing to wait for


def test_statistics_that_never_catch_up_are_noted_not_waited_on_forever() -> None:
    server = LaggingServer(lag=10**9)
    backend = backend_on(server)
    backend.bind({"input_ids": np.zeros((1, 4), dtype="int64")})
    taken = backend.stats(settle_s=0.01)
    assert taken is not None and taken.count == 7
    assert backend.notes() == [
        "server statistics counted 0 of 1 answered requests after 0.01 s: server figures may miss the last requests"
    ]
