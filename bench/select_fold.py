"""The pure selection fold with the replayed best (issue 27), against the floor of folding the same runs into
their windows alone.

    .venv/bin/python bench/select_fold.py [--studies 10] [--trials 100] [--runs 10] [--late 0.1]

Records are built in memory (no MLflow): ``--studies`` x ``--trials`` candidates with ``--runs`` runs each.
Times, per policy, in one process:
  floor   every run added to its group's window, each group aggregated once (what any fold must do)
  batch   ``select_all`` (the replay of each scope's best through its runs in start order)
  stream  one ``apply_benchmark`` + ``select`` per run, as the aggregator does with batches of one, with a share
          ``--late`` of runs arriving after newer ones (each replays its scope from where it belongs)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from podium.core.aggregation import Sample, Window, aggregate, group_key
from podium.core.config import SelectionConfig
from podium.core.records import BenchmarkRecord, TrialRecord
from podium.core.state import SelectionState, select_all


def records(studies: int, trials: int, runs: int, late: float) -> tuple[list[BenchmarkRecord], list[TrialRecord]]:
    rng = random.Random(0)
    out, sides = [], []
    for s in range(studies):
        for i in range(trials):
            t = f"{s}-{i}"
            sides.append(TrialRecord(f"tr{t}", "trial", 0, f"s{s}", t, round(rng.uniform(0.6, 0.95), 4), "bb"))
            base = rng.uniform(2, 40)
            for k in range(runs):
                lat = base * rng.uniform(0.95, 1.1)
                metrics = {"latency_batch_1_p50_ms": lat, "latency_batch_1_p99_ms": lat * 1.6}
                out.append(BenchmarkRecord(f"r{t}-{k}", 0, f"s{s}", t, f"K{t}", "c" * 64, metrics))
    rng.shuffle(out)
    timed = []
    for n, r in enumerate(out):  # arrival order is start order, but a share arrives late (started earlier)
        start = n * 10 - (rng.randrange(1, 60) if rng.random() < late else 0)
        timed.append(
            BenchmarkRecord(
                r.run_id, start, r.study_key_hash, r.trial_key_hash, r.benchmark_key, r.config_hash, r.metrics
            )
        )
    return timed, sides


def floor(benches: list[BenchmarkRecord]) -> None:
    windows: dict = {}
    for b in benches:
        key = group_key(b)
        sample = Sample(b.start_time, b.run_id, b.metrics["latency_batch_1_p50_ms"])
        windows[key] = (windows.get(key) or Window(10)).add(sample)
    for w in windows.values():
        aggregate(w, "median")


def stream(benches: list[BenchmarkRecord], trials: list[TrialRecord], cfg: SelectionConfig) -> None:
    state = SelectionState(cfg)
    for t in trials:
        state.apply_trial(t)
    for b in benches:
        scope = state.apply_benchmark(b)
        if scope is not None:
            state.select(scope)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--late", type=float, default=0.1)
    args = ap.parse_args()
    benches, trials = records(args.studies, args.trials, args.runs, args.late)
    print(f"{len(benches)} runs, {len(trials)} candidates, {args.late:.0%} late; load {os.getloadavg()[0]:.1f}")
    base = best_of(lambda: floor(benches))
    print("| policy | floor s | batch s | batch / floor | stream s | stream events/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for policy in ("constraint", "weighted", "tolerance"):
        cfg = SelectionConfig.model_validate({"selection": {"policy": policy}})
        batch = best_of(lambda cfg=cfg: select_all(benches, trials, cfg))
        live = best_of(lambda cfg=cfg: stream(benches, trials, cfg), repeat=1)
        print(
            f"| {policy} | {base:.3f} | {batch:.3f} | {batch / base:.1f}x | {live:.2f} | {len(benches) / live:,.0f} |"
        )
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
