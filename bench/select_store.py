"""How long `podium select` takes over a large store, against the floor of reading the same runs.

    .venv/bin/python bench/select_store.py [--trials 1000] [--benchmarks 10] [--store bench/out/select]

Generates (once, cached) a sqlite store with --trials trials (trial + refit runs) and --trials x
--benchmarks benchmark runs, written with the plain MLflow client. Then, in one process, times:
  baseline  raw MlflowClient.search_runs paging over every FINISHED run of the three stages
  load      podium's MlflowTracking.load_benchmarks + load_trials (same queries, records built)
  select    the pure fold + ranking (select_all)
  cli       the whole `podium select --json` as a new process (imports included)
and prints a Markdown table with ratios to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import ViewType

from podium.core.config import SelectionConfig
from podium.core.state import select_all
from podium.core.tags import TagsRegistry
from podium.demo.synthetic_store import StoreSpec, generate_store, sqlite_uri
from podium.tracking.tracker import MlflowTracking


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--benchmarks", type=int, default=10)
    ap.add_argument("--store", type=Path, default=Path("bench/out/select"))
    args = ap.parse_args()
    folder = args.store / f"t{args.trials}-b{args.benchmarks}"
    uri = sqlite_uri(folder)
    if not (folder / "done").exists():
        t0 = time.perf_counter()
        store = generate_store(
            uri, StoreSpec(studies=10, trials_per_study=args.trials // 10, benchmarks_per_trial=args.benchmarks)
        )
        (folder / "done").write_text("ok")
        print(
            f"generated {store.benchmark_runs} benchmark + {store.trial_runs + store.refit_runs} training runs "
            f"in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )

    client = MlflowClient(tracking_uri=uri)
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]

    def raw() -> int:
        n = 0
        for stage in ("benchmark", "hpo_trial", "refit"):
            token = None
            while True:
                page = client.search_runs(
                    exp_ids,
                    f"tags.`code.stage` = '{stage}' AND attributes.status = 'FINISHED'",
                    max_results=10_000,
                    page_token=token,
                )
                n += len(page)
                token = page.token
                if not token:
                    break
        return n

    tracking = MlflowTracking(client, TagsRegistry())
    t_raw, n = timed(raw)
    t_load, (benches, trials) = timed(lambda: (tracking.load_benchmarks(exp_ids), tracking.load_trials(exp_ids)))
    t_sel, (sels, _) = timed(lambda: select_all(benches, trials, SelectionConfig()))
    t_cli, proc = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "podium", "select", "--json", "--tracking-uri", uri], capture_output=True
        ),
        repeat=1,
    )
    assert proc.returncode == 0, proc.stderr
    print(f"runs read: {n} ({len(benches)} benchmark, {len(trials)} trial/refit); selections: {len(sels)}\n")
    print("| step | seconds | ratio to raw search_runs |")
    print("| --- | ---: | ---: |")
    for name, t in (
        ("raw search_runs paging (baseline)", t_raw),
        ("podium load (records)", t_load),
        ("podium fold + rank (pure)", t_sel),
        ("`podium select --json` process", t_cli),
    ):
        print(f"| {name} | {t:.2f} | {t / t_raw:.2f}x |")


if __name__ == "__main__":
    main()
