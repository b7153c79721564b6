"""The GPU check: podium's two backends on a CUDA machine, one table, in a few minutes.

    python3 bench/gpu_check.py [--batch-sizes 1,8,32] [--iterations 200] [--no-triton]

1. ``local`` with ``device: cuda``: a TorchScript tagger measured in-process (CUDA synchronised before
   each clock read).
2. ``triton``: the same TorchScript deployed as a generated Python-backend model to the real
   ``tritonserver`` of the nvidia-pytriton wheel, running with CUDA (instance kind AUTO: the GPU), over HTTP
   and gRPC, with the server's own compute time and the client's overhead.

Prints p50/p99 per batch size, server compute, client overhead, and the GPU name and driver. Needs torch
with CUDA; the Triton half needs tritonclient and the pytriton wheel's server (``PODIUM_TRITON_HOME``, see
tests/triton.py), else it is skipped with the reason. Figures go to BENCHMARKS.md, "GPU check".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from podium.backends.factory import make_backend
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.demo.model import TinyTagger, export
from podium.measurement.measure import Measured, run_measurement


def config(backend: str, batch_sizes: list[int], iterations: int, device: str, **extra) -> BenchmarkConfig:
    benchmarking = {
        "backend": backend,
        "batch_sizes": batch_sizes,
        "iterations": iterations,
        "warmup_iterations": 20,
        "max_length": 128,
        "device": device,
        **extra,
    }
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking}, "gpu_check")


def rows(label: str, measured: Measured, batch_sizes: list[int]) -> list[str]:
    out = []
    m = measured.metrics
    for b in batch_sizes:
        server = m.get(f"server_compute_batch_{b}_ms")
        overhead = m.get(f"client_overhead_batch_{b}_ms")
        out.append(
            f"| {label} | {b} | {m[f'latency_batch_{b}_p50_ms']:.3f} | {m[f'latency_batch_{b}_p99_ms']:.3f} | "
            f"{'-' if server is None else f'{server:.3f}'} | {'-' if overhead is None else f'{overhead:.3f}'} | "
            f"{measured.stability} |"
        )
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--no-triton", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the whole script on a machine without a GPU")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA device; run it on a GPU machine (or --device cpu for a dry run)")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="podium-gpu-"))
    torch.manual_seed(0)
    model = export(TinyTagger(256, 4), tmp / "model.pt")
    table = ["| backend | batch | p50 ms | p99 ms | server compute ms | client overhead ms | stability |"]
    table.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")

    local_cfg = config("local", batch_sizes, args.iterations, args.device)
    local = make_backend(local_cfg.benchmarking, model_file=model)
    try:
        measured = run_measurement(local, local_cfg)
        device = measured.device
        table += rows(f"local ({args.device})", measured, batch_sizes)
    finally:
        local.close()

    notes = []
    if args.no_triton:
        notes.append("triton: skipped (--no-triton)")
    else:
        try:
            from tests.triton import start_triton

            server = start_triton(tmp / "triton")
        except BaseException as exc:  # a missing wheel or binary: report it, keep the local figures
            notes.append(f"triton: skipped ({type(exc).__name__}: {str(exc)[:200]})")
        else:
            try:
                for protocol in ("http", "grpc"):
                    cfg = config(
                        "triton",
                        batch_sizes,
                        args.iterations,
                        args.device,
                        protocol=protocol,
                        triton={"deploy": "python"},
                    )
                    backend = make_backend(
                        cfg.benchmarking, model_file=model, url=server.url(protocol), deployment_name="podium-gpu"
                    )
                    try:
                        measured = run_measurement(backend, cfg)
                    finally:
                        backend.close()
                    table += rows(f"triton python ({protocol}), {measured.device}", measured, batch_sizes)
            finally:
                server.stop()
    print(f"device: {device}\nmodel: TinyTagger(width 256, depth 4), max_length 128; {time.monotonic() - t0:.0f} s\n")
    print("\n".join(table))
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    finally_on_sigterm()
    main()
