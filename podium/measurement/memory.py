"""The model's memory, read on every benchmark run: where the model runs in this process (the local runtime), this
process's resident set (RSS) before the model loads and after the measurement, and its peak; where it runs on an
inference server of this host, the RSS of the server's processes (:mod:`podium.measurement.server_memory`); GPU
memory through NVML where ``nvidia-ml-py`` and a GPU are present. Anywhere else, "not measured" and why.

Metrics (MiB, as ``podium tune`` names them): ``memory_host_rss_mb`` (the process, or the server's process tree,
after the measurement), ``memory_model_rss_mb`` (what loading and running the model added), ``memory_peak_rss_mb``
(this process's peak while it measured; local runtime only), ``memory_gpu_mb``. ``benchmark.json``'s ``memory``
holds the same, what was read (``process``) and, when nothing was, ``not_measured``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from podium.core.backend_registry import BackendSpec
from podium.measurement.server_memory import PROC, ServerMemory, find_server_at, rss_bytes

MIB = 2**20


@dataclass(frozen=True)
class MemoryReading:
    metrics: dict[str, float]
    #: ``benchmark.json``'s ``memory``.
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)


class MemoryProbe(Protocol):
    def start(self) -> None:
        """Before the model is loaded."""

    def finish(self) -> MemoryReading:
        """After the measurement."""


def _status_kib(field_name: str, pid: int | str = "self") -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux 4.0+); False where it cannot."""
    try:
        (PROC / "self" / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _reading(host_mb: float, model_mb: float | None, gpu_mb: float | None, summary: dict[str, Any]) -> MemoryReading:
    metrics = {"memory_host_rss_mb": host_mb}
    if model_mb is not None:
        metrics["memory_model_rss_mb"] = max(0.0, model_mb)  # a collection in between can shrink the process
    if gpu_mb is not None:
        metrics["memory_gpu_mb"] = gpu_mb
    return MemoryReading(
        metrics,
        summary | {"host_rss_mb": host_mb, "model_rss_mb": metrics.get("memory_model_rss_mb"), "gpu_mb": gpu_mb},
    )


@dataclass
class ProcessMemory:
    """The model runs in this process: RSS growth from loading it, and the peak while measuring. The runtime's
    own module (``torch``, ``onnxruntime``) is imported before the first reading, so a first import in a fresh
    process is not counted as the model's."""

    runtime_module: str | None = None
    _before: int = 0
    _peak_reset: bool = False

    def start(self) -> None:
        if self.runtime_module:
            with contextlib.suppress(ImportError):
                importlib.import_module(self.runtime_module)
        self._peak_reset = _reset_peak()
        self._before = rss_bytes(os.getpid())

    def finish(self) -> MemoryReading:
        now = rss_bytes(os.getpid())
        peak_kib = _status_kib("VmHWM")
        gpu = ServerMemory(os.getpid()).gpu_mb()
        reading = _reading(
            now / MIB,
            (now - self._before) / MIB,
            gpu,
            {"process": "this process (the model runs in it)", "before_load_rss_mb": self._before / MIB},
        )
        if peak_kib is not None:
            peak = peak_kib * 1024 / MIB
            reading.metrics["memory_peak_rss_mb"] = peak
            reading.summary["peak_rss_mb"] = peak
            reading.summary["peak_since"] = "the model loaded" if self._peak_reset else "the process started"
        return reading


@dataclass
class ServerProcessMemory:
    """The model runs on a server of this host: the RSS of its process tree before the model is uploaded and
    after the measurement (what the upload added only when podium uploaded it)."""

    server: ServerMemory
    deploys: bool
    _before: float = 0.0

    def start(self) -> None:
        self._before = self.server.host_rss_mb()

    def finish(self) -> MemoryReading:
        now = self.server.host_rss_mb()
        reading = _reading(
            now,
            now - self._before if self.deploys else None,
            self.server.gpu_mb(),
            {"process": f"server process {self.server.pid} and its children", "before_load_rss_mb": self._before},
        )
        if not self.deploys:
            reading.notes.append("memory: the model was already on the server, so what it adds was not read")
        return reading


@dataclass
class NotMeasured:
    why: str

    def start(self) -> None:
        pass

    def finish(self) -> MemoryReading:
        return MemoryReading({}, {"not_measured": self.why}, [f"memory not measured: {self.why}"])


def probe_for(backend: object, spec: BackendSpec, runtime_module: str | None, protocol: str) -> MemoryProbe:
    """How this run's model memory is read: in this process, on a server of this host, or not at all (why)."""
    if spec.in_process:
        return ProcessMemory(runtime_module)
    url = getattr(backend, "url", None)
    if not spec.server or not url:
        return NotMeasured(f"the {spec.name} backend runs no model")
    from podium.backends.triton import host_port

    server, why = find_server_at(host_port(url, protocol))
    if server is None:
        return NotMeasured((why or "").removeprefix("server memory not read: "))
    return ServerProcessMemory(server, getattr(backend, "deployment", None) is not None)
