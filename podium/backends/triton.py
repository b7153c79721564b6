"""``triton`` backend: a model on an NVIDIA Triton (or any KServe V2) server, over HTTP or gRPC.

Every call has a timeout. Readiness and metadata are checked first with errors that name the model
and the URL. HTTP inputs go as binary tensors only when the server announces Triton's
``binary_tensor_data`` extension (MLServer does not: JSON then). Server-side statistics come from
Triton's statistics extension when present; otherwise the backend says so in ``notes()``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from podium.backends.base import BackendError, HardwareInfo, InputSpec, ServerStats
from podium.backends.triton_config import model_config


def _host_port(url: str, protocol: str) -> str:
    parts = urlsplit(url if "://" in url else f"{protocol}://{url}")
    if not parts.hostname or not parts.port:
        raise BackendError(f"server URL {url!r} must name a host and a port, e.g. 127.0.0.1:8000")
    return f"{parts.hostname}:{parts.port}"


class TritonBackend:
    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        protocol: str = "http",
        timeout_s: float = 30.0,
        deploy_file: Path | None = None,
        deploy_signature: tuple[list[InputSpec], list[InputSpec]] | None = None,
        max_batch_size: int = 8,
    ):
        self.url = url
        self.protocol = protocol
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.deploy_file = deploy_file
        self.deploy_signature = deploy_signature
        self.max_batch_size = max_batch_size
        self._notes: list[str] = []
        self._loaded_by_us = False
        self._binary = False
        self._server: dict[str, Any] = {}
        self._stats_supported = True
        target = _host_port(url, protocol)
        if protocol == "grpc":
            import tritonclient.grpc as client_mod

            self._mod = client_mod
            self.client = client_mod.InferenceServerClient(url=target)
            self._kw: dict[str, Any] = {"client_timeout": timeout_s}
        else:
            import tritonclient.http as client_mod

            self._mod = client_mod
            self.client = client_mod.InferenceServerClient(
                url=target, connection_timeout=timeout_s, network_timeout=timeout_s
            )
            self._kw = {}
        self._where = f"{protocol}://{target}"

    # ------------------------------------------------------------------ helpers

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs, **self._kw)
        except Exception as exc:  # tritonclient raises InferenceServerException, socket and gevent errors
            raise BackendError(f"{what} on {self._where} failed: {_reason(exc)}") from None

    def _json(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(value, preserving_proto_field_name=True)

    # ------------------------------------------------------------------ port

    def prepare(self) -> list[InputSpec]:
        if not self._call("server liveness check", self.client.is_server_live):
            raise BackendError(f"server {self._where} is not live")
        if not self._call("server readiness check", self.client.is_server_ready):
            raise BackendError(f"server {self._where} is not ready")
        self._server = self._json(self._call("server metadata", self.client.get_server_metadata))
        self._binary = self.protocol == "http" and "binary_tensor_data" in self._server.get("extensions", [])
        if self.protocol == "http" and not self._binary:
            self._notes.append("server lacks binary_tensor_data: HTTP inputs sent as JSON (binary_data=False)")
        if not self._model_ready():
            if self.deploy_file is None:
                raise BackendError(
                    f"model {self.model_name!r} (version {self.model_version or 'latest'}) not ready on "
                    f"{self._where}; load it into the server, or pass the model artifact to deploy it"
                )
            self._deploy()
        meta = self._json(
            self._call(
                f"metadata of model {self.model_name!r}",
                self.client.get_model_metadata,
                self.model_name,
                self.model_version,
            )
        )
        specs = [InputSpec(i["name"], i["datatype"], tuple(int(d) for d in i["shape"])) for i in meta.get("inputs", [])]
        if not specs:
            raise BackendError(f"model {self.model_name!r} on {self._where} declares no inputs in its metadata")
        return specs

    def _model_ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model_name, self.model_version, **self._kw))
        except Exception:
            return False

    def _deploy(self) -> None:
        if self.deploy_signature is None:
            raise BackendError(f"cannot deploy {self.deploy_file}: its input/output signature is unknown")
        inputs, outputs = self.deploy_signature
        config = model_config(self.model_name, inputs, outputs, self.max_batch_size)
        files = {"file:1/model.pt": Path(self.deploy_file).read_bytes()}
        try:
            self.client.load_model(self.model_name, config=json.dumps(config), files=files, **self._kw)
        except Exception as exc:
            raise BackendError(
                f"cannot deploy model {self.model_name!r} to {self._where}: load_model with a config and "
                f"files was refused ({_reason(exc)}). The server must run in explicit model-control mode "
                "and support Triton's model upload (MLServer does not); otherwise put the model in the "
                "server's repository and benchmark it by name"
            ) from None
        self._loaded_by_us = True
        if not self._model_ready():
            raise BackendError(f"model {self.model_name!r} was loaded on {self._where} but is not ready")

    def bind(self, inputs: Mapping[str, np.ndarray]) -> Callable[[], object]:
        request = []
        for name, array in inputs.items():
            datatype = self._mod.np_to_triton_dtype(array.dtype)
            item = self._mod.InferInput(name, list(array.shape), datatype)
            if self.protocol == "http":
                item.set_data_from_numpy(array, binary_data=self._binary)
            else:
                item.set_data_from_numpy(array)
            request.append(item)
        client, name, version, kw = self.client, self.model_name, self.model_version, self._kw
        if self.protocol == "grpc":

            def call() -> object:
                return client.infer(name, request, model_version=version, client_timeout=kw["client_timeout"])
        else:

            def call() -> object:
                return client.infer(name, request, model_version=version)

        self._call(f"a first request to model {self.model_name!r}", lambda **_: call())
        return call

    def stats(self) -> ServerStats | None:
        if not self._stats_supported:
            return None
        try:
            raw = self._json(self.client.get_inference_statistics(self.model_name, self.model_version, **self._kw))
        except Exception as exc:
            self._stats_supported = False
            self._notes.append(f"server statistics unavailable ({_reason(exc)[:120]}): client-side figures only")
            return None
        try:
            s = raw["model_stats"][0]["inference_stats"]
            compute = sum(int(s[k].get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output"))
            return ServerStats(
                count=int(s["success"].get("count", 0)),
                queue_ns=int(s["queue"].get("ns", 0)),
                compute_ns=compute,
                total_ns=int(s["success"].get("ns", 0)),
            )
        except (KeyError, IndexError, TypeError, ValueError):
            self._stats_supported = False
            self._notes.append("server statistics in an unknown shape: client-side figures only")
            return None

    def notes(self) -> list[str]:
        return list(self._notes)

    def describe(self) -> HardwareInfo:
        name = self._server.get("name", "unknown")
        version = self._server.get("version", "unknown")
        summary = f"{name} {version} at {self._where} ({self.protocol})"
        return HardwareInfo(
            summary,
            {
                "kind": "server",
                "server": name,
                "server_version": version,
                "url": self._where,
                "protocol": self.protocol,
                "backend": "triton",
            },
        )

    def close(self) -> None:
        if self._loaded_by_us:
            with contextlib.suppress(Exception):  # best effort on the way out
                self.client.unload_model(self.model_name, **self._kw)
        with contextlib.suppress(Exception):
            self.client.close()


def _reason(exc: Exception) -> str:
    msg = getattr(exc, "message", None)
    text = msg() if callable(msg) else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0][:300]
