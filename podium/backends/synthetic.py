"""``synthetic`` backend: no model, a fixed service time. For pipeline smoke tests and benchmarks of
podium's own bookkeeping (a 0 ms service time makes measurement cost nothing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from podium.backends.base import HardwareInfo, InputSpec, RuntimeRequest, ServerStats


class SyntheticBackend:
    def __init__(self, service_ms: float = 0.0):
        self.service_s = service_ms / 1000.0

    def prepare(self) -> list[InputSpec]:
        return [InputSpec("input_ids", "INT64", (-1, -1))]

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        service = self.service_s

        def call() -> object:
            if service:
                time.sleep(service)
            return None

        return call

    def stats(self) -> ServerStats | None:
        return None

    def notes(self) -> list[str]:
        return ["synthetic backend: no model was run"]

    def describe(self) -> HardwareInfo:
        return HardwareInfo(f"synthetic ({self.service_s * 1000:g} ms service)", {"kind": "synthetic"})

    def close(self) -> None:
        pass


def open_synthetic(request: RuntimeRequest) -> SyntheticBackend:
    """The ``synthetic`` backend's runtime: ``synthetic_service_ms`` per request, no model."""
    return SyntheticBackend(request.cfg.synthetic_service_ms)
