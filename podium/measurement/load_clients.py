"""Lean senders for load levels: one per in-flight slot, each on its own connection, with requests built once.

tritonclient's own clients spend ~0.6 ms of Python per request (asyncio HTTP) or more, which under load becomes
the bottleneck instead of the server. A slot here holds a keep-alive socket (HTTP, binary tensors: the whole
request, headers included, is pre-built bytes) or its own gRPC channel with a pre-built ``ModelInferRequest``, so
a request costs a send and a read. In-process backends share one ``bind()`` per planned request among the slots;
an HTTP server without binary tensors (MLServer) is refused: tritonclient's HTTP client is not thread-safe.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from podium.backends.base import InferenceBackend
from podium.backends.triton import TritonBackend, TritonEndpoint
from podium.errors import BackendError

Sender = Callable[[], object]
Inputs = Mapping[str, np.ndarray]


@dataclass
class SlotClients:
    """One sender per slot (each used by one thread only), the client's name, and what closes their connections."""

    senders: list[Sender]
    client: str
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def slot_senders(backend: InferenceBackend, plan: Sequence[Inputs], slots: int) -> SlotClients:
    """``slots`` senders, each cycling over ``plan`` from its own offset (``lean-http``, ``lean-grpc``, or
    ``bind``: the backend's own call, bound once per slot)."""
    if not plan:
        raise ValueError("a load level needs at least one planned request")
    if isinstance(backend, TritonBackend):
        ep = backend.endpoint()
        if ep.protocol == "http" and ep.binary:
            bodies = [http_request(ep, inputs) for inputs in plan]
            http = [HttpSlot(ep) for _ in range(slots)]
            senders = [_cycle([h.sender(b) for b in bodies], k) for k, h in enumerate(http)]
            return SlotClients(senders, "lean-http", [h.close for h in http])
        if ep.protocol == "grpc":
            requests = [grpc_request(ep, inputs).SerializeToString() for inputs in plan]
            grpcs = [GrpcSlot(ep) for _ in range(slots)]
            senders = [_cycle(g.senders(requests), k) for k, g in enumerate(grpcs)]
            return SlotClients(senders, "lean-grpc", [g.channel.close for g in grpcs])
        # tritonclient's HTTP client holds one connection and is not safe across threads
        raise BackendError(
            f"load levels over HTTP need binary tensors, which the server at {ep.host_port} does not announce: "
            "use protocol: grpc, or measure without benchmarking.load"
        )
    # in-process runtimes (torch, onnxruntime) run one bound call from several threads at once
    calls = [backend.bind(inputs) for inputs in plan]
    return SlotClients([_cycle(calls, k) for k in range(slots)], "bind")


def _cycle(calls: list[Sender], offset: int) -> Sender:
    if len(calls) == 1:
        return calls[0]
    state = [offset % len(calls)]

    def send() -> object:
        i = state[0]
        state[0] = (i + 1) % len(calls)
        return calls[i]()

    return send


# ---------------------------------------------------------------- HTTP/1.1, KServe V2 binary tensors


def http_request(ep: TritonEndpoint, inputs: Inputs) -> bytes:
    """The whole POST (request line, headers, JSON header, raw tensors) of one inference, outputs binary."""
    from podium.backends.inputs import NUMPY_DTYPES

    kserve = {np.dtype(v): k for k, v in NUMPY_DTYPES.items()}
    raw = [np.ascontiguousarray(a).tobytes() for a in inputs.values()]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(a.shape),
                    "datatype": kserve[a.dtype],
                    "parameters": {"binary_data_size": len(r)},
                }
                for (name, a), r in zip(inputs.items(), raw, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        },
        separators=(",", ":"),
    ).encode()
    body = header + b"".join(raw)
    version = f"/versions/{ep.model_version}" if ep.model_version else ""
    head = (
        f"POST /v2/models/{ep.model_name}{version}/infer HTTP/1.1\r\n"
        f"Host: {ep.host_port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class HttpSlot:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, ep: TritonEndpoint):
        self.ep = ep
        host, port = ep.host_port.rsplit(":", 1)
        self.address = (host, int(port))
        self.sock: socket.socket | None = None
        self.buf = bytearray(65536)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.ep.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def sender(self, request: bytes) -> Sender:
        def send() -> object:
            try:
                return self._exchange(request)
            except (ConnectionError, TimeoutError, OSError) as exc:
                self.close()
                if isinstance(exc, TimeoutError):
                    raise BackendError(
                        f"a request to model {self.ep.model_name!r} on http://{self.ep.host_port} timed out "
                        f"after {self.ep.timeout_s:g} s"
                    ) from None
                try:  # a keep-alive connection the server closed: once more on a new one
                    return self._exchange(request)
                except OSError as again:
                    self.close()
                    raise BackendError(
                        f"a request to model {self.ep.model_name!r} on http://{self.ep.host_port} failed: {again}"
                    ) from None

        return send

    def _exchange(self, request: bytes) -> int:
        sock = self.sock or self._connect()
        sock.sendall(request)
        view, got, end = memoryview(self.buf), 0, -1
        while end < 0:
            n = sock.recv_into(view[got:])
            if n == 0:
                raise ConnectionResetError("the server closed the connection")
            got += n
            end = self.buf.find(b"\r\n\r\n", 0, got)
            if end < 0 and got == len(self.buf):
                raise BackendError("a response header over 64 KiB: not a KServe V2 server")
        head = bytes(self.buf[:end]).lower()
        status = int(head[9:12])
        at = head.find(b"content-length:")
        if at < 0:
            raise BackendError(f"the server answered without a Content-Length (HTTP {status})")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        body = bytearray(self.buf[end + 4 : got])
        while len(body) < length:
            chunk = sock.recv(max(65536, length - len(body)))
            if not chunk:
                raise ConnectionResetError("the server closed the connection mid-response")
            body += chunk
        if b"connection: close" in head:
            self.close()
        if status != 200:
            text = bytes(body[:300]).decode("utf-8", "replace")
            raise BackendError(
                f"model {self.ep.model_name!r} on http://{self.ep.host_port} answered HTTP {status}: {text}"
            )
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---------------------------------------------------------------- gRPC


def grpc_request(ep: TritonEndpoint, inputs: Inputs) -> Any:
    from tritonclient.grpc import service_pb2

    from podium.backends.inputs import NUMPY_DTYPES

    kserve = {np.dtype(v): k for k, v in NUMPY_DTYPES.items()}
    request = service_pb2.ModelInferRequest(model_name=ep.model_name, model_version=ep.model_version)
    for name, array in inputs.items():
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, kserve[array.dtype]
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    return request


#: KServe's inference call on Triton's gRPC service.
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class GrpcSlot:
    """One channel of its own (no shared subchannel), so slots do not queue behind each other. Requests go as
    bytes serialized once, and answers come back as bytes, never parsed: no protobuf work per request."""

    def __init__(self, ep: TritonEndpoint):
        import grpc

        self.ep = ep
        self.channel = grpc.insecure_channel(
            ep.host_port,
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2**31 - 1),
            ],
        )
        self.infer = self.channel.unary_unary(MODEL_INFER)  # no (de)serializers: bytes in, bytes out

    def senders(self, requests: Sequence[bytes]) -> list[Sender]:
        infer, timeout, ep = self.infer, self.ep.timeout_s, self.ep

        def make(request: bytes) -> Sender:
            def send() -> object:
                try:
                    return infer(request, timeout=timeout)
                except Exception as exc:  # grpc.RpcError
                    details = getattr(exc, "details", None)
                    why = details() if callable(details) else str(exc)
                    raise BackendError(
                        f"a request to model {ep.model_name!r} on grpc://{ep.host_port} failed: {why}"
                    ) from None

            return send

        return [make(r) for r in requests]
