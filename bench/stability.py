"""Stability on real inputs and a busy host detected (issue 27): a small Transformer tagger on variable-length
token sequences (8-200 tokens), podium's own measurement with the shipped defaults, on the local backend (CPU):

    .venv/bin/python bench/stability.py [--reps 5] [--sentences 200] [--burners 3]

A  quiet: each repetition measures once; figures: stable or not, windows used (and how many were discarded
   for contention), p50, the host load podium recorded (others' share of the usable cores).
B  busy: the same, with ``--burners`` CPU-burning processes started when the first window is done (mid-
   measurement) and stopped after it; the verdict per repetition: flagged ``contended`` (or ``unstable``), or
   clean and within 15 % of the quiet median p50. A clean figure more than 15 % off is a wrong number marked
   clean: the bench says so.
Only ``test_data`` and ``padding: longest`` differ from the shipped config/benchmark.yaml (with ``max_length``
padding every request is 512 tokens long and lengths do not vary). The load average before each arm is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.realistic import VOCAB, EncoderTagger
from bench.stopping import finally_on_sigterm
from podium.backends.factory import make_backend
from podium.backends.inputs import MAX_DISTINCT_BATCHES
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.measurement.loop import window_length
from podium.measurement.measure import run_measurement
from tests.burners import Burners

TOLERANCE = 0.15


def sequences(path: Path, count: int) -> dict[str, float]:
    """Token sequences of 8-200 tokens, lognormal (median ~40), seeded."""
    rng = np.random.default_rng(11)
    lengths = np.clip(np.round(rng.lognormal(np.log(40), 0.7, count)).astype(int), 8, 200)
    path.write_text("".join(json.dumps(rng.integers(1, VOCAB, n).tolist()) + "\n" for n in lengths))
    return {"min": int(lengths.min()), "p50": float(np.median(lengths)), "max": int(lengths.max())}


def export(folder: Path) -> Path:
    """The tagger of bench/realistic.py, traced to TorchScript."""
    torch.manual_seed(0)
    example = (torch.randint(1, VOCAB, (2, 16)), torch.ones(2, 16, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = folder / "model.pt"
        torch.jit.save(torch.jit.trace(EncoderTagger().eval(), example, check_trace=False), str(script))
    return script


def measure_once(model: Path, data: Path, burners: int = 0) -> dict:
    cfg = parse_model(BenchmarkConfig, {"benchmarking": {"test_data": str(data), "padding": "longest"}}, "bench")
    backend = make_backend(cfg.benchmarking, model_file=model)
    started: list[Burners] = []
    distinct = min(MAX_DISTINCT_BATCHES, sum(1 for _ in data.open()))  # batch 1: one planned request a sequence
    first_window = window_length(cfg.benchmarking.iterations, distinct)

    def progress(batch: int, phase: str, done: int, total: int) -> None:
        if burners and phase == "measure" and not started and done == first_window:
            started.append(Burners(burners))

    try:
        measured = run_measurement(backend, cfg, model_file=model, progress=progress)
    finally:
        backend.close()
        for b in started:
            b.stop()
    batch = measured.summary["batches"]["1"]
    return {
        "stable": batch["stable"],
        "contended": batch["contended"],
        "windows": len(batch["windows"]),
        "discarded": sum(1 for w in batch["windows"] if "discarded" in w),
        "p50": batch["p50_ms"],
        "cv": batch["cv"],
        "noise_cv": batch["noise_cv"],
        "host": batch["host_contention"],
        "flags": batch["flags"],
        "clean": batch["stable"] and not batch["contended"],
        "burners_started": bool(started),
    }


def row(name: str, r: dict) -> str:
    verdict = "contended" if r["contended"] else "stable" if r["stable"] else "unstable"
    return (
        f"| {name} | {verdict} | {r['windows']} ({r['discarded']}) | {r['p50']:.3f} | {r['cv']:.2f} | "
        f"{r['noise_cv']:.3f} | {100 * r['host']:.0f} % | {', '.join(r['flags']) or '-'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--burners", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="podium-stability-") as tmp:
        folder = Path(tmp)
        script = export(folder)
        mix = sequences(folder / "sequences.jsonl", args.sentences)
        print(f"length mix: {args.sentences} sequences, tokens {mix['min']}-{mix['max']}, p50 {mix['p50']:g}")
        print(f"usable cores: {len(os.sched_getaffinity(0))}; load average before A: {os.getloadavg()}")
        quiet, busy = [], []
        for i in range(args.reps):
            quiet.append(measure_once(script, folder / "sequences.jsonl"))
            print(row(f"A{i + 1} no burners", quiet[-1]), flush=True)
        print(f"load average before B: {os.getloadavg()}")
        for i in range(args.reps):
            busy.append(measure_once(script, folder / "sequences.jsonl", args.burners))
            print(row(f"B{i + 1} +{args.burners} burners", busy[-1]), flush=True)
        print(f"load average after B: {os.getloadavg()}")
    header = "| run | verdict | windows (discarded) | p50 ms | cv | noise cv | others' share | flags |"
    print(f"\n{header}\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for i, r in enumerate(quiet):
        print(row(f"A{i + 1} no burners", r))
    for i, r in enumerate(busy):
        print(row(f"B{i + 1} +{args.burners} burners", r))
    clean = [r["p50"] for r in quiet if r["clean"]]
    reference = statistics.median(clean) if clean else None
    stable_windows = [r["windows"] for r in quiet if r["clean"]]
    print(
        f"\nA: {len(clean)}/{len(quiet)} stable; windows used by the stable ones: "
        f"{stable_windows} (goal <= 5); quiet median p50: {reference and f'{reference:.3f} ms'}"
    )
    wrong = 0
    for i, r in enumerate(busy):
        off = None if reference is None else r["p50"] / reference - 1
        ok = not r["clean"] or (off is not None and abs(off) <= TOLERANCE)
        wrong += not ok
        said = "clean" if r["clean"] else "flagged " + ("contended" if r["contended"] else "unstable")
        against = "n/a" if off is None else f"{100 * off:+.1f} %"
        print(f"B{i + 1}: {said}, p50 {against} vs quiet -> {'ok' if ok else 'WRONG NUMBER MARKED CLEAN'}")
    print(f"\nwrong numbers marked clean: {wrong} of {len(busy)}")


if __name__ == "__main__":
    finally_on_sigterm()
    main()
