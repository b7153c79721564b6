"""``triton`` backend: a model on an NVIDIA Triton (or any KServe V2) server, over HTTP or gRPC.

Every call has a timeout. Readiness and metadata are checked first with errors that name the model
and the URL. HTTP inputs go as binary tensors only when the server announces Triton's
``binary_tensor_data`` extension (MLServer does not: JSON then). Server-side statistics come from
Triton's statistics extension when present; otherwise the backend says so in ``notes()``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from podium.backends.base import HardwareInfo, InputSpec, RuntimeRequest, ServerStats
from podium.core.backend_registry import format_spec
from podium.errors import BackendError

if TYPE_CHECKING:
    from podium.core.config import BenchmarkingSection


@dataclass(frozen=True)
class Deployment:
    """A model uploaded through the model-control API before measuring and unloaded after."""

    deploy: str  # the format, e.g. libtorch or python
    config: dict[str, Any]
    files: dict[str, bytes]
    #: What podium derived to write the config (e.g. outputs learned by a dry run): notes on the run.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TritonEndpoint:
    protocol: str
    host_port: str  # host:port
    model_name: str
    model_version: str
    #: HTTP: the server takes binary tensors (Triton's binary_tensor_data extension).
    binary: bool
    timeout_s: float


def host_port(url: str, protocol: str) -> str:
    """``host:port`` of a server URL given with or without a scheme; one error line when either is missing."""
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
        deployment: Deployment | None = None,
    ):
        self.url = url
        self.protocol = protocol
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.deployment = deployment
        self._notes: list[str] = list(deployment.notes) if deployment else []
        self._loaded_by_us = False
        self._binary = False
        self._server: dict[str, Any] = {}
        self._stats_supported = True
        #: Successful requests this backend made, and the server's count before the first: Triton records a
        #: request's statistics after releasing its response, so a reading waits until it counts them all.
        self._answered = [0]
        self._count_before: int | None = None
        target = host_port(url, protocol)
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
        # Liveness, not server readiness: with Triton's strict readiness one unavailable model (another
        # user's, or one just unloaded) makes the whole server "not ready"; the model's own readiness counts.
        if not self._call("server liveness check", self.client.is_server_live):
            raise BackendError(f"server {self._where} is not live")
        self._server = self._json(self._call("server metadata", self.client.get_server_metadata))
        self._binary = self.protocol == "http" and "binary_tensor_data" in self._server.get("extensions", [])
        if self.protocol == "http" and not self._binary:
            self._notes.append("server lacks binary_tensor_data: HTTP inputs sent as JSON (binary_data=False)")
        if self.deployment is not None:
            self._deploy(self.deployment)
        elif not self._model_ready():
            raise BackendError(
                f"model {self.model_name!r} (version {self.model_version or 'latest'}) not ready on "
                f"{self._where}; load it into the server, or set benchmarking.triton.deploy to upload it"
            )
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
        before = self._read_stats()
        self._count_before = before.count if before else None
        return specs

    def _model_ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model_name, self.model_version, **self._kw))
        except Exception:
            return False

    def _deploy(self, deployment: Deployment) -> None:
        self._loaded_by_us = True  # from here on, close() unloads whatever the server made of it
        try:
            self.client.load_model(
                self.model_name, config=json.dumps(deployment.config), files=deployment.files, **self._kw
            )
        except Exception as exc:
            raise BackendError(
                f"server {self._where} refused to load model {self.model_name!r} deployed as "
                f"{deployment.deploy} ({_reason(exc)}). The server must run in explicit model-control mode and "
                "accept uploads (MLServer does not) with a backend for that format; else choose another "
                "benchmarking.triton.deploy, or put the model in the server's repository and use deploy: none"
            ) from None
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
        client, name, version, where = self.client, self.model_name, self.model_version, self._where
        extra = {"client_timeout": self._kw["client_timeout"]} if self.protocol == "grpc" else {}
        answered = self._answered

        def call() -> object:
            try:  # free unless it raises (zero-cost exceptions): the timed region stays the request itself
                result = client.infer(name, request, model_version=version, **extra)
            except Exception as exc:
                raise BackendError(f"a request to model {name!r} on {where} failed: {_reason(exc)}") from None
            answered[0] += 1
            return result

        self._call(f"a first request to model {self.model_name!r}", lambda **_: call())
        return call

    def endpoint(self) -> TritonEndpoint:
        """Where and how the model is reached, for a client of its own (load levels); after ``prepare()``."""
        return TritonEndpoint(
            self.protocol,
            host_port(self.url, self.protocol),
            self.model_name,
            self.model_version,
            self._binary,
            self.timeout_s,
        )

    def count_answered(self, requests: int) -> None:
        """Requests another client made to this model on this backend's behalf (load levels): ``stats()`` then
        waits until the server counts them too."""
        self._answered[0] += requests

    def stats(self, settle_s: float = 5.0) -> ServerStats | None:
        """The server's statistics once they count every request this backend has had answered (Triton
        records a request after releasing its response; a reading taken in between would put part of it in
        the wrong window). Other clients of the same model only add to the count. Waits ``settle_s`` at most,
        then says so in ``notes()``."""
        taken = self._read_stats()
        if taken is None or self._count_before is None:
            return taken
        expected = self._count_before + self._answered[0]
        deadline, pause = time.monotonic() + settle_s, 0.0005
        while taken is not None and taken.count < expected and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            taken = self._read_stats()
        if taken is not None and taken.count < expected:
            self._notes.append(
                f"server statistics counted {taken.count - self._count_before} of {self._answered[0]} answered "
                f"requests after {settle_s:g} s: server figures may miss the last requests"
            )
        return taken

    def _read_stats(self) -> ServerStats | None:
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
        summary = f"{name} {version} ({self.protocol})"
        return HardwareInfo(
            summary,
            {
                "kind": "server",
                "server": name,
                "server_version": version,
                "url": self._where,
                "protocol": self.protocol,
                "backend": "triton",
                "deploy": self.deployment.deploy if self.deployment else "none",
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


def open_triton(request: RuntimeRequest) -> TritonBackend:
    """The ``triton`` backend's runtime: the model named ``request.model_name`` (or ``triton.model_name``) on
    the server, else the model file uploaded as ``triton.deploy`` under ``request.deployment_name``."""
    cfg, url = request.cfg, str(request.url)
    name = request.model_name or cfg.triton.model_name
    if name is not None:  # a model already on the server
        return TritonBackend(url, name, request.model_version, cfg.protocol, cfg.request_timeout_s)
    if request.model_file is None:
        raise BackendError(f"deploying to Triton as {cfg.triton.deploy} needs the model file (--run-id or --model-uri)")
    upload = deployment(cfg, request.model_file, request.deployment_name)
    return TritonBackend(url, request.deployment_name, "", cfg.protocol, cfg.request_timeout_s, upload)


def deployment(cfg: BenchmarkingSection, model_file: Path, name: str) -> Deployment:
    """What to upload for ``triton.deploy``: the config from the signature the model's format reads, and the
    files (with weights the format keeps beside the model). A model that declares no outputs, for a deploy whose
    config needs them, is run once on CPU to learn them (:mod:`podium.backends.outputs`), and the deployment
    notes what was derived."""
    from podium.backends.factory import require_extra, resolve
    from podium.backends.triton_deploy import model_config, model_files

    fmt = format_spec(cfg.model_format)
    t = cfg.triton
    if fmt.signature_requires is not None:
        module, extra = fmt.signature_requires
        require_extra(module, extra, f"deploying a {fmt.label} model (its signature is read with {module})")
    signature: tuple[list[InputSpec], list[InputSpec]] | None = resolve(fmt.signature)(model_file)
    inputs, outputs = signature or ([], [])
    notes: tuple[str, ...] = ()
    if not outputs and t.deploy in fmt.outputs_by_dry_run:
        require_extra("torch", "torch", "learning the outputs of a model that declares none (a dry run)")
        from podium.backends.outputs import dry_run

        declared = RuntimeRequest(cfg).declared_inputs()
        inputs, outputs, note = dry_run(model_file, declared, cfg.batch_sizes, cfg.max_length, t.deploy, cfg.seed)
        notes = (note,)
    config = model_config(
        name, t.deploy, inputs, outputs, t.max_batch_size or max(cfg.batch_sizes), t.instance_count, t.dynamic_batching
    )
    weights = model_file.with_name(f"{model_file.name}{fmt.weights_suffix}") if fmt.weights_suffix else None
    beside = {weights.name: weights.read_bytes()} if weights is not None and weights.is_file() else None
    return Deployment(t.deploy, config, model_files(t.deploy, model_file.read_bytes(), beside=beside), notes)
