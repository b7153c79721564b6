"""podium's load levels vs perf_analyzer on a GPU (issue 22): bench/load.py's comparison, with a TorchScript tagger
deployed through podium's model-control upload as ``libtorch`` (Triton's PyTorch backend) on the GPU.

    python3 bench/gpu_load.py --url HOST:8000 --grpc-url HOST:8001   # a tritonserver with the PyTorch backend
    python3 bench/gpu_load.py --deploy python                        # the pytriton wheel's server, started here

    [--concurrency 1,2,4,8] [--request-rate 50,100,200] [--instances 1,2] [--width 256] [--rounds 2]

``libtorch`` needs a server that has the PyTorch backend (the tritonserver container, docker-compose.yml); the
pytriton wheel's server has only the Python backend, so ``--deploy python`` wraps the same TorchScript in a
generated Python-backend model (as bench/gpu_check.py does) on a server this script starts. Per instance count the
model is uploaded once and each level measured by podium then by perf_analyzer (``--input-data zero``: token ids
must stay inside the vocabulary), interleaved over ``--rounds``; the same table as bench/load.py, with the GPU
named. Where no CUDA GPU is present it refuses with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench.stopping import finally_on_sigterm  # noqa: E402  (found through the path above)


def refuse(why: str) -> int:
    """Say why this cannot run, in one line on stderr; the exit status."""
    print(f"gpu_load: {why}", file=sys.stderr)
    return 2


def gpu_or_refuse() -> str:
    """The GPU's name, or exit 2 with one line saying why this cannot run here."""
    try:
        import torch
    except ImportError:
        sys.exit(refuse("torch is not installed (pip install 'podium[torch]'); it needs CUDA and a GPU"))
    if not torch.cuda.is_available():
        sys.exit(refuse("no CUDA GPU here (torch.cuda.is_available() is False): run it on a GPU machine"))
    return f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="HTTP host:port of a tritonserver with the PyTorch backend (for libtorch)")
    ap.add_argument("--grpc-url", help="its gRPC host:port")
    ap.add_argument("--deploy", choices=["libtorch", "python"], default="libtorch")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--request-rate", default="50,100,200")
    ap.add_argument("--window-s", type=float, default=1.0)
    ap.add_argument("--stability", type=float, default=1.25)
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--instances", default="1,2")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-in-flight", type=int, default=16, help="Open loop: in flight at most, for both (load.py)")
    args = ap.parse_args()
    gpu = gpu_or_refuse()
    if args.deploy == "libtorch" and not args.url:
        sys.exit(
            refuse(
                "--deploy libtorch needs a tritonserver with the PyTorch backend (docker-compose.yml's): pass "
                "--url HOST:8000 --grpc-url HOST:8001, or use --deploy python"
            )
        )

    from load import compare_levels, ensure_perf_analyzer, print_table

    from podium.backends.factory import make_backend
    from podium.backends.triton import TritonBackend
    from podium.core.config import BenchmarkConfig
    from podium.core.validation import parse_model
    from podium.demo.model import TinyTagger, export
    from tests.triton import start_triton

    binary = ensure_perf_analyzer()
    levels = [("c", float(c)) for c in args.concurrency.split(",") if c] + [
        ("r", float(r)) for r in args.request_rate.split(",") if r
    ]
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-gpu-load-"))
    model_file = export(TinyTagger(args.width, 2), tmp / "model.pt")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    server = None if args.url else start_triton(tmp / "triton")
    urls = {
        "http": args.url or server.url("http"),
        "grpc": args.grpc_url or (server.url("grpc") if server else None),
    }
    rows: list = []
    try:
        for count in (int(i) for i in args.instances.split(",")):
            name = f"gpu_tagger_i{count}"
            cfg = parse_model(
                BenchmarkConfig,
                {
                    "benchmarking": {
                        "backend": "triton",
                        "device": "cuda",
                        "max_length": 16,
                        "batch_sizes": [1],
                        "triton": {"deploy": args.deploy, "instance_count": count, "max_batch_size": 8},
                    }
                },
                "gpu_load",
            )
            uploader = make_backend(cfg.benchmarking, model_file=model_file, url=urls["http"], deployment_name=name)
            try:
                uploader.prepare()  # uploaded once; each level's client reads the loaded model
                for protocol in args.protocols.split(","):
                    if urls.get(protocol) is None:
                        print(f"gpu_load: no {protocol} URL given: {protocol} skipped", file=sys.stderr)
                        continue
                    backend = TritonBackend(urls[protocol], name, protocol=protocol)
                    try:
                        rows += compare_levels(
                            backend, binary, urls[protocol], protocol, name, levels, args, ("--input-data", "zero")
                        )
                    finally:
                        backend.close()
            finally:
                uploader.close()  # unloads it
    finally:
        if server is not None:
            server.stop()
    print(f"GPU: {gpu}; deploy {args.deploy}; TinyTagger width {args.width}, depth 2; batch 1, 16 tokens")
    print_table(rows, load_before, args)


if __name__ == "__main__":
    finally_on_sigterm()
    main()
