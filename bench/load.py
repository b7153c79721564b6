"""podium's load levels vs perf_analyzer, side by side in one run, on the real tritonserver.

    .venv/bin/python bench/load.py [--concurrency 1,2,4,8] [--request-rate 50,100,200] [--window-s 1]

Starts the real ``tritonserver`` of the nvidia-pytriton wheel (tests/triton.py; CPU, Python backend) with a model
that busy-waits 5 ms per request, at instance_count 1 and 2. For each protocol (HTTP with binary tensors, gRPC),
model and level it measures podium's level (podium/measurement/load.py, the lean clients) and then perf_analyzer's
(``--concurrency-range c:c`` or ``--request-rate-range r:r --request-distribution poisson``) on the same server,
both with windows of about ``--window-s`` seconds that must agree within ``--stability`` (perf_analyzer's ``-s``;
podium's ``stability.max_ratio``), at most 10 windows. Goals: podium p50 <= 1.05x perf_analyzer's, throughput
>= 0.95x; open loop: podium's achieved rate within 2 % of the asked one.

perf_analyzer is the binary of the ``tritonclient==2.51.0`` manylinux wheel (the server's own version), unpacked
into ~/.cache/podium/perf_analyzer-2.51.0 with links to ``libb64.so.0d`` and ``libcudart.so.12`` from the pytriton
wheel's ``nvidia_pytriton.libs`` (no GPU is used):

    .venv/bin/pip download --no-deps tritonclient==2.51.0 --only-binary=:all: \
        --platform manylinux1_x86_64 --python-version 3.11 -d ~/.cache/podium/
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from podium.backends.inputs import build_inputs
from podium.backends.triton import TritonBackend
from podium.core.config import BenchmarkingSection
from podium.measurement.load import level_snapshots, run_level
from podium.measurement.load_clients import slot_senders
from tests.triton import TRITON_HOME, busy_model, start_triton

CACHE = Path.home() / ".cache" / "podium"
PA_HOME = CACHE / "perf_analyzer-2.51.0"
LIBS = TRITON_HOME / "nvidia_pytriton.libs"
SERVICE_MS = 5.0
LENGTH = 16


def ensure_perf_analyzer() -> Path:
    binary = PA_HOME / "perf_analyzer"
    if binary.exists():
        return binary
    wheels = sorted(CACHE.glob("tritonclient-2.51.0-*manylinux*.whl"))
    if not wheels:
        sys.exit("perf_analyzer missing: download the tritonclient==2.51.0 wheel as the docstring says")
    PA_HOME.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        binary.write_bytes(wheel.read("tritonclient-2.51.0.data/data/bin/perf_analyzer"))
    binary.chmod(0o755)
    for link, pattern in (("libb64.so.0d", "libb64-*.so.0d"), ("libcudart.so.12", "libcudart-*.so.12*")):
        (PA_HOME / link).unlink(missing_ok=True)
        (PA_HOME / link).symlink_to(next(LIBS.glob(pattern)))
    return binary


def perf_analyzer(
    binary: Path, url: str, protocol: str, model: str, level: tuple[str, float], args, extra: tuple[str, ...] = ()
) -> dict:
    """perf_analyzer at one level; ``extra``: more of its options (e.g. ``--input-data zero`` for token ids)."""
    kind, value = level
    out = Path(tempfile.mkstemp(suffix=".csv")[1])
    cmd = [
        str(binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "-b",
        "1",
        "--shape",
        f"input_ids:{LENGTH}",
        "-p",
        str(int(args.window_s * 1000)),
        "-s",
        str(round((args.stability - 1) * 100)),
        "--max-trials",
        "10",
        "-f",
        str(out),
        *extra,
    ]
    if kind == "c":
        cmd += ["--concurrency-range", f"{int(value)}:{int(value)}"]
    else:  # as many request threads as podium has slots: the same queue at saturation
        cmd += ["--request-rate-range", f"{value:g}:{value:g}", "--request-distribution", "poisson"]
        cmd += ["--max-threads", str(args.max_in_flight)]
    env = {**os.environ, "LD_LIBRARY_PATH": f"{PA_HOME}:{LIBS}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    rows = list(csv.DictReader(out.read_text().splitlines())) if out.stat().st_size else []
    out.unlink()
    if not rows:
        return {"error": (done.stdout + done.stderr).strip().splitlines()[-1][:120]}
    row = rows[0]
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50": float(row["p50 latency"]) / 1000,
        "p99": float(row["p99 latency"]) / 1000,
        "stable": done.returncode == 0,
    }


def podium_level(backend: TritonBackend, level: tuple[str, float], args) -> dict:
    kind, value = level
    cfg = BenchmarkingSection(
        # about window_s of requests: the asked rate, or the ~200/s one 5 ms instance serves
        iterations=max(50, int(args.window_s * (value if kind == "r" else 1000 / SERVICE_MS))),
        warmup_iterations=20,
        seed=0,
        stability={"max_ratio": args.stability, "max_windows": 10},
    )
    inputs = build_inputs(backend.prepare(), 1, LENGTH)
    slots = slot_senders(backend, [inputs], int(value) if kind == "c" else args.max_in_flight)
    start, end = level_snapshots(backend, own_client=True)
    try:
        lv = run_level(slots.senders, 1, cfg, rate=value if kind == "r" else None, snapshot=start, finish_snapshot=end)
    finally:
        slots.close()
    return {
        "throughput": lv.summary.throughput_per_s,
        "p50": lv.summary.p50_ms,
        "p99": lv.summary.p99_ms,
        "stable": lv.stable,
        "achieved": lv.achieved_per_s,
        "cpu": lv.client_cpu_ms,
    }


def median_of(runs: list[dict]) -> dict:
    """Per figure, the median over the rounds that produced it (a failed perf_analyzer round has none)."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    out: dict = {}
    for key in good[0]:
        values = [r[key] for r in good]
        if isinstance(values[0], bool) or values[0] is None:
            out[key] = all(values) if isinstance(values[0], bool) else None
        else:
            out[key] = statistics.median(values)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--request-rate", default="50,100,200")
    ap.add_argument("--window-s", type=float, default=1.0)
    ap.add_argument("--stability", type=float, default=1.25)
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--instances", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--max-in-flight",
        type=int,
        default=16,
        help="Open loop: requests in flight at most, for both (podium's load.max_in_flight, perf_analyzer's "
        "--max-threads): at saturation the queue, and so the latency, is as deep as this lets it be",
    )
    args = ap.parse_args()
    binary = ensure_perf_analyzer()
    levels = [("c", float(c)) for c in args.concurrency.split(",") if c] + [
        ("r", float(r)) for r in args.request_rate.split(",") if r
    ]
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-load-"))
    models = []
    for count in (int(i) for i in args.instances.split(",")):
        name = f"busy5_i{count}"
        busy_model(tmp / "models", name, SERVICE_MS)
        pbtxt = tmp / "models" / name / "config.pbtxt"
        pbtxt.write_text(pbtxt.read_text().replace("count: 1", f"count: {count}"))
        models.append(name)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    server = start_triton(tmp, load=models)
    rows = []
    try:
        for protocol in args.protocols.split(","):
            for model in models:
                backend = TritonBackend(server.url(protocol), model, protocol=protocol)
                try:
                    rows += compare_levels(backend, binary, server.url(protocol), protocol, model, levels, args)
                finally:
                    backend.close()
    finally:
        server.stop()
    print_table(rows, load_before, args)


def compare_levels(
    backend: TritonBackend,
    binary: Path,
    url: str,
    protocol: str,
    model: str,
    levels: list[tuple[str, float]],
    args,
    extra: tuple[str, ...] = (),
) -> list[tuple]:
    """Per level, podium's level then perf_analyzer's on the same model, ``args.rounds`` times interleaved (both see
    the same host, in turn); the medians, as rows of :func:`print_table`."""
    rows = []
    for level in levels:
        ours_runs, theirs_runs = [], []
        for _ in range(args.rounds):
            ours_runs.append(podium_level(backend, level, args))
            theirs_runs.append(perf_analyzer(binary, url, protocol, model, level, args, extra))
        ours, theirs = median_of(ours_runs), median_of(theirs_runs)
        rows.append((protocol, model, level, ours, theirs))
        print(protocol, model, level, ours, theirs, file=sys.stderr, flush=True)
    return rows


def print_table(rows: list, load_before: list[str], args) -> None:
    """The host line and the side-by-side table (BENCHMARKS.md's shape)."""
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"{os.cpu_count()} cores; /proc/loadavg before {' '.join(load_before)}, after {' '.join(load_after)}; "
        f"windows ~{args.window_s:g} s, stable within {args.stability:g}x over 3 windows (at most 10)\n"
    )
    print(
        "| protocol | model | level | podium items/s | PA items/s | tput ratio | podium p50 ms | PA p50 ms | "
        "p50 ratio | podium p99 | PA p99 | achieved/asked | client CPU ms/req | stable (podium/PA) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for protocol, model, (kind, value), ours, theirs in rows:
        name = f"{kind}{value:g}"
        achieved = f"{ours['achieved'] / value:.3f}" if ours["achieved"] else "-"
        if "error" in theirs:
            print(
                f"| {protocol} | {model} | {name} | {ours['throughput']:.1f} | - | - | {ours['p50']:.3f} | - | - | "
                f"{ours['p99']:.3f} | - | {achieved} | {ours['cpu']:.3f} | {ours['stable']}/failed: {theirs['error']} |"
            )
            continue
        print(
            f"| {protocol} | {model} | {name} | {ours['throughput']:.1f} | {theirs['throughput']:.1f} | "
            f"{ours['throughput'] / theirs['throughput']:.3f}x | {ours['p50']:.3f} | {theirs['p50']:.3f} | "
            f"{ours['p50'] / theirs['p50']:.3f}x | {ours['p99']:.3f} | {theirs['p99']:.3f} | {achieved} | "
            f"{ours['cpu']:.3f} | {ours['stable']}/{theirs['stable']} |"
        )


if __name__ == "__main__":
    finally_on_sigterm()
    main()
