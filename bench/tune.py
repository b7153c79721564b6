"""``podium tune``: quick (coordinate descent) vs exhaustive search on a 3x2x2 grid, on the real tritonserver.

    .venv/bin/python bench/tune.py [--concurrency 8] [--sla-p99-ms 150] [--iterations 40] [--step-ms 10]

Starts the real ``tritonserver`` of the nvidia-pytriton wheel (tests/triton.py; CPU, Python backend) and tunes one
Python-backend model over instance_count 1,2,3 x max_batch_size 1,8 x dynamic batching on,off, in both modes, each
on the same server, through podium's runner (podium/measurement/tune.py: deploy, load levels, unload). The model
sleeps per execute (whatever the batch): ``step_ms`` x a slowdown that grows with the instance count (1, 1.1, 2.5:
instances that share a device contend), plus ``per_item_ms`` per request in the batch. Sleeping, not spinning, so a
busy host barely changes the service time. Reports whether both modes picked the same winner, each mode's wall
time and configs measured, and every config's throughput at the budget; writes bench/out/tune.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from podium.backends.triton import Deployment
from podium.core.config import BenchmarkConfig
from podium.core.tuning import SearchSpace
from podium.core.validation import parse_model
from podium.measurement.server_memory import find_server
from podium.measurement.tune import TuneTarget, tune
from tests.triton import start_triton

MODEL = """\
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: float(v["string_value"]) for k, v in config["parameters"].items()}
        count = config["instance_group"][0]["count"]
        self.step_s = params["step_ms"] / 1000 * [1.0, 1.1, 2.5][min(count, 3) - 1]
        self.item_s = params["per_item_ms"] / 1000

    def execute(self, requests):
        time.sleep(self.step_s + self.item_s * len(requests))
        responses = []
        for request in requests:
            ids = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input_ids"))
            scores = pb_utils.Tensor.from_dlpack("scores", ids.astype(np.float32))
            responses.append(pb_utils.InferenceResponse([scores]))
        return responses
"""


def deployment(step_ms: float, per_item_ms: float) -> Deployment:
    config = {
        "name": "bench-tune",
        "backend": "python",
        "max_batch_size": 8,
        "input": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        "output": [{"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]}],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": {"step_ms": {"string_value": str(step_ms)}, "per_item_ms": {"string_value": str(per_item_ms)}},
    }
    return Deployment("python", config, {"file:1/model.py": MODEL.encode()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="8")
    parser.add_argument("--sla-p99-ms", type=float, default=150.0)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--per-item-ms", type=float, default=2.0)
    args = parser.parse_args()
    section = {
        "backend": "triton",
        "iterations": args.iterations,
        "warmup_iterations": 8,
        "max_length": 8,
        "stability": {"max_windows": 6},
        "triton": {"deploy": "python"},
        "load": {"concurrency": [int(c) for c in args.concurrency.split(",")], "sla_p99_ms": args.sla_p99_ms},
    }
    cfg = parse_model(BenchmarkConfig, {"benchmarking": section}, "bench").benchmarking
    space = SearchSpace(instance_count=(1, 2, 3), max_batch_size=(1, 8), dynamic_batching=(True, False))
    print("loadavg before:", Path("/proc/loadavg").read_text().strip())
    server = start_triton(Path(tempfile.mkdtemp(prefix="bench-tune-")))
    results = {}
    try:
        memory, _ = find_server(server.http_port)
        target = TuneTarget(server.http, "http", 30.0, deployment(args.step_ms, args.per_item_ms), memory)
        for mode in ("exhaustive", "quick"):
            started = time.monotonic()
            found = tune(target, cfg, space, mode)
            wall = time.monotonic() - started
            results[mode] = {"wall_s": round(wall, 1), **found.table}
            print(f"{mode}: winner {found.table['winner']}, {found.table['measured']} configs, {wall:.1f} s")
            for row in found.table["configs"]:
                tp = row["throughput_at_sla_per_s"]
                print(
                    f"  {row['label']:<12} {tp if tp is None else round(tp, 1)!s:>8}/s at {row['met_level']}, "
                    f"{row['seconds']:.1f} s, server RSS {row.get('memory_host_rss_mb', 0):.0f} MiB"
                )
    finally:
        server.stop()
    print("loadavg after:", Path("/proc/loadavg").read_text().strip())
    same = results["quick"]["winner"] == results["exhaustive"]["winner"]
    ratio = results["quick"]["wall_s"] / results["exhaustive"]["wall_s"]
    print(f"same winner: {'yes' if same else 'no'}; quick took {ratio:.2f}x exhaustive's time")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "tune.json").write_text(json.dumps({"args": vars(args), "same_winner": same, **results}, indent=2))


if __name__ == "__main__":
    finally_on_sigterm()
    main()
