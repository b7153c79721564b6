"""podium's measurement loop vs a bare tritonclient loop, on a real tritonserver, same model, same run.

    .venv/bin/python bench/triton_overhead.py [--iterations 200] [--rounds 5]

Starts the real ``tritonserver`` of the nvidia-pytriton wheel (tests/triton.py; CPU, Python backend) with
two models that busy-wait a known service time: ``busy0`` (0 ms) and ``busy5`` (5 ms). For each protocol
(HTTP with binary tensors, gRPC) and model, alternates rounds of
  bare    a loop of client.infer() timed with perf_counter_ns around the call (inputs built once)
  podium  measure_batch() over TritonBackend.bind() with the same iteration count (one window)
and reports the median p50 of each, the ratio podium/bare (goal <= 1.1x), the gap podium adds over the bare
loop (goal <= 0.1 ms), and the server's own compute time (statistics extension) beside the client p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from podium.backends.inputs import build_inputs
from podium.backends.triton import TritonBackend
from podium.core.config import BenchmarkingSection
from podium.core.stats import summarize
from podium.measurement.loop import measure_batch
from tests.triton import busy_model, start_triton

SERVICE_MS = {"busy0": 0.0, "busy5": 5.0}


def bare_loop(backend: TritonBackend, inputs, n: int) -> float:
    """What a user would write with tritonclient alone: the same request, timed around the call."""
    mod, client = backend._mod, backend.client
    request = []
    for name, array in inputs.items():
        item = mod.InferInput(name, list(array.shape), mod.np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array)  # binary tensors over HTTP (Triton has binary_tensor_data)
        request.append(item)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        client.infer(backend.model_name, request)
        samples.append(time.perf_counter_ns() - t0)
    return summarize(samples, 1).p50_ms


def server_compute_ms(backend: TritonBackend, call, n: int) -> float:
    before = backend.stats()
    for _ in range(n):
        call()
    after = backend.stats()
    return (after.compute_ns - before.compute_ns) / (after.count - before.count) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = BenchmarkingSection(
        iterations=args.iterations,
        warmup_iterations=0,
        stability={"max_windows": 2, "agree_windows": 2, "max_ratio": 100.0},
    )
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    for name, ms in SERVICE_MS.items():
        busy_model(tmp / "models", name, ms)
    server = start_triton(tmp, load=list(SERVICE_MS))
    rows = []
    try:
        for protocol in ("http", "grpc"):
            for model in SERVICE_MS:
                backend = TritonBackend(server.url(protocol), model, protocol=protocol)
                inputs = build_inputs(backend.prepare(), 1, 16)
                call = backend.bind(inputs)
                for _ in range(20):
                    call()
                bare, ours, compute = [], [], []
                for _ in range(args.rounds):
                    bare.append(bare_loop(backend, inputs, args.iterations))
                    ours.append(measure_batch(call, 1, cfg).windows[0].p50_ms)
                    compute.append(server_compute_ms(backend, call, args.iterations // 4))
                backend.close()
                rows.append((protocol, model, *(statistics.median(x) for x in (bare, ours, compute))))
    finally:
        server.stop()
    print(
        f"{args.rounds} interleaved rounds x {args.iterations} requests, batch 1, max_length 16; "
        f"load before the run: {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| protocol | model (service) | bare p50 ms | podium p50 ms | podium / bare | podium - bare | "
        "server compute ms | client p50 - server compute |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for protocol, model, b, p, c in rows:
        print(
            f"| {protocol} | {model} ({SERVICE_MS[model]:g} ms) | {b:.3f} | {p:.3f} | {p / b:.3f}x | "
            f"{p - b:+.3f} ms | {c:.3f} | {p - c:+.3f} ms |"
        )


if __name__ == "__main__":
    finally_on_sigterm()
    main()
