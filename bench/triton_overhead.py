"""podium's measurement loop vs a bare tritonclient loop, same server, same model, same run.

    .venv/bin/python bench/triton_overhead.py [--iterations 200] [--rounds 5]

Starts MLServer 1.7.1 (a real KServe V2 server; tests/servers.py) with a 0 ms model (echo) and a 5 ms
model (sleepy, a precise busy wait). For each protocol and model, alternates rounds of
  bare    a loop of client.infer() timed with perf_counter_ns around the call (inputs built once)
  podium  measure_batch() over TritonBackend.bind() with the same iteration count (one window)
and reports the median p50 of each, the ratio podium/bare (goal <= 1.1x), and for sleepy the error of
the p50 against the known 5 ms service time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podium.backends.inputs import build_inputs
from podium.backends.triton import TritonBackend
from podium.core.config import BenchmarkingSection
from podium.core.stats import summarize
from podium.measurement.loop import measure_batch
from tests.servers import start_mlserver

SERVICE_MS = {"echo": 0.0, "sleepy": 5.0}


def bare_loop(backend: TritonBackend, inputs, n: int) -> float:
    """What a user would write with tritonclient alone: the same request, timed around the call."""
    mod, client = backend._mod, backend.client
    request = []
    for name, array in inputs.items():
        item = mod.InferInput(name, list(array.shape), mod.np_to_triton_dtype(array.dtype))
        if backend.protocol == "http":
            item.set_data_from_numpy(array, binary_data=False)
        else:
            item.set_data_from_numpy(array)
        request.append(item)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        client.infer(backend.model_name, request)
        samples.append(time.perf_counter_ns() - t0)
    return summarize(samples, 1).p50_ms


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
    server = start_mlserver(Path(tempfile.mkdtemp(prefix="podium-bench-")))
    rows = []
    try:
        for protocol in ("http", "grpc"):
            for model in ("echo", "sleepy"):
                url = server.http if protocol == "http" else server.grpc
                backend = TritonBackend(url, model, protocol=protocol)
                inputs = build_inputs(backend.prepare(), 1, 16)
                call = backend.bind(inputs)
                for _ in range(20):
                    call()
                bare, ours = [], []
                for _ in range(args.rounds):
                    bare.append(bare_loop(backend, inputs, args.iterations))
                    ours.append(measure_batch(call, 1, cfg).windows[0].p50_ms)
                backend.close()
                b, p = statistics.median(bare), statistics.median(ours)
                rows.append((protocol, model, b, p))
    finally:
        server.stop()
    print(f"{args.rounds} interleaved rounds x {args.iterations} requests, batch 1, max_length 16\n")
    print("| protocol | model (service) | bare p50 ms | podium p50 ms | podium / bare | p50 - service (podium) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for protocol, model, b, p in rows:
        err = (
            f"{p - SERVICE_MS[model]:+.3f} ms ({(p - SERVICE_MS[model]) / SERVICE_MS[model]:+.1%})"
            if SERVICE_MS[model]
            else "n/a"
        )
        print(f"| {protocol} | {model} ({SERVICE_MS[model]:g} ms) | {b:.3f} | {p:.3f} | {p / b:.3f}x | {err} |")


if __name__ == "__main__":
    main()
