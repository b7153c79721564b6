"""Start-up on a store that does not exist yet, while a training script writes its first run (issue 26):
N repetitions, each on a fresh sqlite path, of 2 real `podium worker` processes and a `podium aggregator`
started first, then a plain-mlflow training script right behind them. Counts failures on either side: the
training script exiting non-zero (an alembic or "database is locked" error in the user's own MLflow call),
or a podium process that dies, logs a traceback, or does not use the store once it exists.

    .venv/bin/python bench/store_race.py [--reps 50] [--workers 2]

Needs redis-server on PATH. Prints one line per repetition and a summary; figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stopping import finally_on_sigterm
from tests.integration.test_store_init import TRAINING
from tests.servers import spawn, start_redis, wait_until

REPO = Path(__file__).resolve().parent.parent


def one(tmp: Path, redis_url: str, workers: int) -> tuple[bool, bool, str]:
    """(training ok, podium ok, why) for one fresh store."""
    db = tmp / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    env = {
        **os.environ,
        "PODIUM_REDIS_URL": redis_url,
        "PODIUM_TRACKING_URI": uri,
        "PODIUM_CONFIG_DIR": str(REPO / "config"),
        "PYTHONUNBUFFERED": "1",
    }
    procs = []
    for name, args in [*((f"worker-{i}", ["worker"]) for i in range(workers)), ("aggregator", ["aggregator"])]:
        folder = tmp / name
        folder.mkdir()
        procs.append(spawn([sys.executable, "-m", "podium", *args], folder, env=env, cwd=tmp))
    try:
        training = subprocess.run([sys.executable, "-c", TRAINING, uri], capture_output=True, text=True, timeout=300)
        trained = training.returncode == 0
        agg = procs[-1]
        used = wait_until(lambda: "Leading as" in agg.log() or "standing by" in agg.log().lower(), 120)
        ready = wait_until(lambda: all("ready: warmed" in p.log() for p in procs[:-1]), 180)
        broken = [p.folder.name for p in procs if p.proc.poll() is not None or "Traceback" in p.log()]
        why = "" if trained else training.stderr.strip().splitlines()[-1][:200]
        if not (used and ready) or broken:
            why += f" podium: aggregator used the store={used}, workers ready={ready}, broken={broken}"
        return trained, used and ready and not broken, why
    finally:
        for p in procs:
            p.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="podium-store-race-") as top:
        server = start_redis(Path(top) / "redis")
        try:
            failures = {"training": 0, "podium": 0}
            t0 = time.monotonic()
            for i in range(args.reps):
                tmp = Path(top) / f"rep-{i}"
                tmp.mkdir()
                trained, podium_ok, why = one(tmp, server.url, args.workers)
                failures["training"] += not trained
                failures["podium"] += not podium_ok
                print(
                    f"rep {i + 1}/{args.reps}: training {'ok' if trained else 'FAILED'}, podium "
                    f"{'ok' if podium_ok else 'FAILED'} {why}",
                    flush=True,
                )
        finally:
            server.stop()
    print(
        f"{args.reps} repetitions ({args.workers} workers + aggregator each) in {time.monotonic() - t0:.0f} s: "
        f"{failures['training']} training failures, {failures['podium']} podium failures; "
        f"load average {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    finally_on_sigterm()
    main()
