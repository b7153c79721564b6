"""Costs that must not grow with the store (issue 15), each against a baseline in the same run, interleaved,
on a real redis-server and real MLflow sqlite stores of ~1k and ~12k runs (generated once, cached in
~/.cache/podium/bench-stores).

    .venv/bin/python bench/costs.py [--reps 3] [--benchmarks 30] [--events 10000] [--rate 1000] [--seconds 5]
                                    [--parts ABCDE]

A  bookkeeping per benchmark: podium's worker path (`execute`: done marker, fenced lock, existence check,
   MLflow run with tags, metrics and benchmark.json, fenced prepare, FINISHED, fenced commit, release) on the
   zero-cost synthetic backend, alternating call by call (medians) with a tight hand-written baseline that
   writes the very same run (the same tags in create_run, metrics in one log_batch, the same benchmark.json
   straight to the run's artifact location, set_terminated) and one XADD, and reads nothing back. With
   --write-back on (the default, as PODIUM_WRITE_BACK) the champions are real trial runs and both paths write
   the same headline back onto them; off: neither does.
B  the existence check of a key that exists (hit) and of a new key (miss), at both store sizes.
C  aggregator events/s on live events (each names a run just written to MLflow, so each batch is verified
   against MLflow), vs a bare XREADGROUP/XACK loop over the same entries, and vs the verifying floor: that loop
   plus the same three SQL reads of the run tables podium's check sends (what any consumer that checks each
   event against MLflow must pay, with nothing validated, compared or folded).
D  event -> PUBLISH latency at a steady rate, aggregator and sender in their own processes.
E  `podium select --json` as a process vs a fresh process paging the same runs with raw search_runs.
Figures: median of the repetitions, with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from mlflow import MlflowClient

from bench.stopping import finally_on_sigterm
from bench.stores import cached_store, study_hash, trial_hash
from podium.aggregator.service import Aggregator
from podium.coordination import keys
from podium.coordination.subscriber import subscribe
from podium.core.config import BenchmarkConfig, SelectionConfig
from podium.core.records import Champion
from podium.core.state import folded_metrics
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.producers.enqueue import build_request
from podium.settings.env import PodiumSettings
from podium.testing import Unfenced
from podium.tracking.tracker import MlflowTracking, fact_tags
from podium.workers.deps import build_deps
from podium.workers.execute import execute
from tests.pipeline_helpers import bulk_results, trial_run
from tests.servers import start_redis

REPO = Path(__file__).resolve().parent.parent
ZERO = {
    "backend": "synthetic",
    "iterations": 1,
    "warmup_iterations": 0,
    "stability": {"max_windows": 2, "agree_windows": 2, "max_ratio": 1000.0},
}
SIZES = {"1k": (100, 8), "12k": (1000, 10)}  # (trials, benchmarks per trial): 1,000 and 12,000 runs


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[round(p / 100 * (len(values) - 1))]


class Store:
    """One store size: a fresh copy of the cached store, podium's worker deps on it, and the baseline's copy
    of what podium writes for one benchmark."""

    def __init__(self, name: str, tmp: Path, redis_url: str, write_back: bool = True, pool: int = 0):
        trials, per_trial = SIZES[name]
        self.name = name
        self.uri = cached_store(trials, per_trial, tmp / name)
        self.settings = PodiumSettings(
            redis_url=redis_url, tracking_uri=self.uri, config_dir=REPO / "config", write_back=write_back
        )
        self.deps = build_deps(self.settings)
        self.tracking = self.deps.tracking
        self.client = self.tracking.client
        self.redis = self.deps.redis
        self.config = parse_model(BenchmarkConfig, {"benchmarking": ZERO}, "bench")
        self.study = study_hash(0)
        self.count = 0
        # the champions measured: real trial runs made before timing, so podium's write-back of the headline
        # onto them is a real write (and the baseline makes the same one); past the pool, made-up ids
        self.write_back = write_back
        self.pool = [trial_run(self.client, self.study, trial_hash(0, i % 10), 0.8) for i in range(pool + 1)]
        first = self.podium_once()  # podium's own run is the template the baseline copies
        run = self.client.get_run(first)
        self.tags = dict(run.data.tags)
        self.metrics = dict(run.data.metrics)
        local = self.client.download_artifacts(first, self.config.output.filename, str(tmp / f"{name}-art"))
        self.summary = json.loads(Path(local).read_text())
        self.experiment = self.tracking.benchmark_experiment_id()
        written = self.client.get_run(self.tags[self.tracking.tags.benchmark.champion_run_id]) if write_back else None
        self.back_metrics = (
            {k: v for k, v in written.data.metrics.items() if k.startswith("podium.")} if written else {}
        )
        self.back_tags = {k: v for k, v in written.data.tags.items() if k.startswith("podium.")} if written else {}

    def champion(self) -> Champion:
        self.count += 1
        trial = trial_hash(0, self.count % 10)
        run_id = self.pool.pop() if self.pool else f"{self.name}bench{self.count:024d}"
        return Champion(run_id, self.study, trial, "data-v1", "eval-v1")

    def podium_once(self) -> str:
        outcome = execute(build_request(self.champion(), self.config), self.deps)
        assert outcome.status == "measured", outcome
        return outcome.run_id

    def baseline_once(self) -> str:
        """The same run written by hand, tightly: nothing is read back (``log_dict`` would fetch the run to find
        its artifact location; the location create_run returned is used instead)."""
        from mlflow.entities import Metric
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        tags = {**self.tags, "benchmark_key": f"{self.count:064x}"}
        self.count += 1
        run = self.client.create_run(self.experiment, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in self.metrics.items()])
        with tempfile.TemporaryDirectory(prefix="bench-artifact-") as folder:
            local = Path(folder) / self.config.output.filename
            local.write_text(json.dumps(self.summary))
            get_artifact_repository(run.info.artifact_uri).log_artifact(str(local))
        self.client.set_terminated(run_id)
        self.redis.xadd("bench:baseline", {"data": json.dumps({"run_id": run_id})})
        if self.write_back:  # the same headline onto the champion, as podium writes it back
            from mlflow.entities import RunTag

            champion = self.champion().run_id
            self.client.log_batch(
                champion,
                metrics=[Metric(k, v, now, 0) for k, v in sorted(self.back_metrics.items())],
                tags=[RunTag(k, v) for k, v in sorted(self.back_tags.items())],
            )
        return run_id


def bench_bookkeeping(stores: dict[str, Store], reps: int, n: int) -> dict[str, dict[str, list[float]]]:
    """Per repetition and store: the median ms of ``n`` baseline and ``n`` podium benchmarks, made alternately
    (baseline, podium, baseline, ...), so a burst of load from other processes falls on both paths alike."""
    out = {name: {"baseline": [], "podium": []} for name in stores}
    for _ in range(reps):  # interleaved: sizes alternate within each repetition, paths within each size
        for name, store in stores.items():
            times: dict[str, list[float]] = {"baseline": [], "podium": []}
            for _ in range(n):
                for path, fn in (("baseline", store.baseline_once), ("podium", store.podium_once)):
                    t0 = time.perf_counter()
                    fn()
                    times[path].append((time.perf_counter() - t0) * 1000)
            for path, values in times.items():
                out[name][path].append(statistics.median(values))
    return out


def bench_existence(stores: dict[str, Store], n: int = 50) -> dict[str, dict[str, float]]:
    out = {}
    for name, store in stores.items():
        hit_request = build_request(store.champion(), store.config)
        execute(hit_request, store.deps)
        tracking = MlflowTracking.connect(store.uri, TagsRegistry())  # a new worker: nothing learned yet
        champion = store.champion()
        identity = build_request(champion, store.config).identity
        t0 = time.perf_counter()
        tracking.benchmark_exists(identity, champion)
        first_miss = (time.perf_counter() - t0) * 1000
        hits, misses = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            assert tracking.benchmark_exists(hit_request.identity, hit_request.champion) is not None
            hits.append((time.perf_counter() - t0) * 1000)
            champion = store.champion()
            identity = build_request(champion, store.config).identity
            t0 = time.perf_counter()
            assert tracking.benchmark_exists(identity, champion) is None
            misses.append((time.perf_counter() - t0) * 1000)
        out[name] = {"hit": statistics.median(hits), "miss": statistics.median(misses), "first_miss": first_miss}
    return out


def study_store(tmp: Path, name: str, seed: int) -> tuple[str, MlflowTracking, str, list[str]]:
    """A new sqlite store holding one study of 20 trials (trial runs only): uri, tracking, study, trials."""
    uri = f"sqlite:///{tmp / f'{name}.db'}"
    MlflowClient(uri).search_experiments()  # the training side creates the store: podium never does
    tracking = MlflowTracking.connect(uri, TagsRegistry())
    study = study_hash(seed)
    trials = [trial_hash(seed, t) for t in range(20)]
    for i, t in enumerate(trials):
        trial_run(tracking.client, study, t, 0.8 + i / 1000)
    return uri, tracking, study, trials


def bare_loop(r: redis.Redis, group: str, events: int) -> float:
    """Events/s of XREADGROUP + XACK alone."""
    t0 = time.perf_counter()
    done = 0
    while done < events:
        resp = r.xreadgroup(group, "c", {keys.BENCHMARKS_STREAM: ">"}, count=500)
        ids = [e for _, batch in resp for e, _ in batch]
        r.xack(keys.BENCHMARKS_STREAM, group, *ids)
        done += len(ids)
    return events / (time.perf_counter() - t0)


def verifying_loop(r: redis.Redis, group: str, db: Path, experiments: list[str], events: int) -> float:
    """Events/s of the floor of any consumer that checks each event against MLflow: XREADGROUP, the same three
    indexed reads of the run tables podium's check sends (status; the tags and the metrics it uses), XACK; only
    the run id is parsed out of each event, nothing is validated, compared or folded."""
    import sqlite3

    reads = ((fact_tags(TagsRegistry()), "tags"), (folded_metrics(SelectionConfig()), "latest_metrics"))
    con = sqlite3.connect(db)
    t0 = time.perf_counter()
    done = 0
    while done < events:
        resp = r.xreadgroup(group, "c", {keys.BENCHMARKS_STREAM: ">"}, count=500)
        entries = [e for _, batch in resp for e in batch]
        ids = [json.loads(f["data"])["run_id"] for _, f in entries]
        marks, in_experiments = ",".join("?" * len(ids)), ",".join("?" * len(experiments))
        con.execute(
            "SELECT run_uuid, status, start_time, lifecycle_stage FROM runs "
            f"WHERE run_uuid IN ({marks}) AND experiment_id IN ({in_experiments})",
            (*ids, *map(int, experiments)),
        ).fetchall()
        for names, table in reads:
            con.execute(
                f"SELECT * FROM {table} WHERE run_uuid IN ({marks}) AND key || '' IN ({','.join('?' * len(names))})",
                (*ids, *names),
            ).fetchall()
        r.xack(keys.BENCHMARKS_STREAM, group, *[e for e, _ in entries])
        done += len(entries)
    elapsed = time.perf_counter() - t0
    con.close()
    return events / elapsed


def podium_loop(agg: Aggregator, events: int) -> tuple[float, float]:
    """Events/s of the aggregator's steps on ``events`` new entries, and the share of its MLflow look-ups."""
    tracking, lookups = agg.tracking, [0.0]
    real = tracking.run_facts

    def timed_facts(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            lookups[0] += time.perf_counter() - t

    tracking.run_facts = timed_facts  # type: ignore[method-assign]
    applied = agg.stats.applied
    t0 = time.perf_counter()
    done = 0
    while done < events:
        done += agg.step(block_ms=10)
    total = time.perf_counter() - t0
    tracking.run_facts = real  # type: ignore[method-assign]
    letters = [f["error"] for _, f in agg.client.xrange(keys.DEAD_LETTERS_STREAM, count=3)]
    assert agg.stats.applied - applied == events and agg.stats.dead_letters == 0, (agg.stats, letters)
    return events / total, lookups[0] / total


def bench_aggregator(tmp: Path, r: redis.Redis, events: int, reps: int) -> dict[str, list[float]]:
    """Events/s of the bare loop, of the verifying floor and of podium's aggregator, interleaved per repetition
    (floor and podium take turns reading the new runs first); each repetition's events name runs just written
    (live: none verified before)."""
    uri, tracking, study, trials = study_store(tmp, "agg", 99)
    db = Path(uri.split("///", 1)[1])
    agg = Aggregator(r, tracking, SelectionConfig(), "bench", leadership=Unfenced(r))
    agg.ensure_group()
    agg.rebuild()  # before the runs exist: every event below is live, verified against MLflow
    out: dict[str, list[float]] = {"bare": [], "verifying": [], "podium": [], "lookup_share": []}
    for rep in range(reps):
        first = rep * events
        runs = [(trials[i % 20], 5.0 + (i * 7919 % 100) / 10, f"c{i % 20}") for i in range(first, first + events)]
        results = bulk_results(tracking, uri, study, runs, int(time.time() * 1000) - 600_000 + first)
        for group in (f"bare{rep}", f"verifying{rep}"):
            r.xgroup_create(keys.BENCHMARKS_STREAM, group, id="$")  # this repetition's entries only
        pipe = r.pipeline(transaction=False)
        for result in results:
            pipe.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})
        pipe.execute()
        out["bare"].append(bare_loop(r, f"bare{rep}", events))
        if rep % 2:
            rate, share = podium_loop(agg, events)
        out["verifying"].append(verifying_loop(r, f"verifying{rep}", db, tracking.recent_experiment_ids(), events))
        if not rep % 2:
            rate, share = podium_loop(agg, events)
        out["podium"].append(rate)
        out["lookup_share"].append(share)
    return out


def bench_latency(tmp: Path, r: redis.Redis, redis_url: str, rate: int, seconds: float) -> list[float]:
    uri, tracking, study, trials = study_store(tmp, "latency", 77)
    config_dir = tmp / "latency-config"
    config_dir.mkdir()
    (config_dir / "best_model_selection.yaml").write_text("benchmark:\n  latency_aggregation: latest\n")
    env = {**os.environ, "PODIUM_REDIS_URL": redis_url, "PODIUM_TRACKING_URI": uri}
    env["PODIUM_CONFIG_DIR"] = str(config_dir)
    log_path = tmp / "agg.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "podium", "aggregator"], env=env, stdout=log, stderr=log)
    n = int(rate * seconds)
    runs = [(trials[i % 20], 1.0 + i % 50, f"live{i % 20}") for i in range(n)]
    results = bulk_results(tracking, uri, study, runs, int(time.time() * 1000))  # in MLflow before their events
    sent: dict[str, float] = {}
    latencies: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        for update in subscribe(redis_url, study, stop=stop, poll_s=0.05):
            t = sent.get(update.best.benchmark_run_id) if update.best else None
            if t is not None:
                latencies.append((time.perf_counter() - t) * 1000)

    threading.Thread(target=listen, daemon=True).start()
    deadline = time.monotonic() + 60
    while b"Rebuilt from MLflow" not in log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        start = time.perf_counter()
        for i, result in enumerate(results):
            due = start + i / rate  # sleep, never spin: the listener thread shares this process's GIL
            time.sleep(max(0.0, due - time.perf_counter()))
            sent[result.run_id] = time.perf_counter()
            r.xadd(keys.BENCHMARKS_STREAM, {"data": result.encode()})
        time.sleep(2)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=10)
    return latencies


RAW_PAGING = """
import sys
from mlflow import MlflowClient
from mlflow.entities import ViewType
client = MlflowClient(sys.argv[1])
ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
n = 0
for stage in ("benchmark", "hpo_trial", "refit"):
    token = None
    while True:
        page = client.search_runs(ids, f"tags.`code.stage` = '{stage}' AND attributes.status = 'FINISHED'",
                                  max_results=10000, page_token=token)
        n += len(page)
        token = page.token
        if not token:
            break
print(n)
"""


def bench_select(tmp: Path, reps: int) -> dict[str, list[float]]:
    uri = cached_store(*SIZES["12k"], tmp / "select")
    out: dict[str, list[float]] = {"raw": [], "podium": []}
    for _ in range(reps):
        for name, cmd in (
            ("raw", [sys.executable, "-c", RAW_PAGING, uri]),
            ("podium", [sys.executable, "-m", "podium", "select", "--json", "--tracking-uri", uri]),
        ):
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            out[name].append(time.perf_counter() - t0)
            assert done.returncode == 0, done.stderr[-2000:]
    return out


def print_bookkeeping(bookkeeping: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(
        f"A. Bookkeeping per benchmark, ms (median of {args.benchmarks} alternating benchmarks a path, "
        f"x {args.reps} interleaved reps; write-back onto the champion {args.write_back} for both paths)\n"
    )
    print("| store | baseline (same writes + XADD) | podium worker path | ratio |\n| --- | ---: | ---: | ---: |")
    ratios = {}
    for name, rows in bookkeeping.items():
        ratio = [p / b for p, b in zip(rows["podium"], rows["baseline"], strict=True)]
        ratios[name] = statistics.median(ratio)
        print(f"| {name} | {spread(rows['baseline'])} | {spread(rows['podium'])} | {spread(ratio, '{:.2f}')}x |")
    print(f"\nratio at 12k / ratio at 1k: {ratios['12k'] / ratios['1k']:.3f}\n")


def print_existence(existence: dict[str, dict[str, float]]) -> None:
    print("B. Existence check, ms (median of 50; first miss = a new worker's first check of the study)\n")
    print("| store | hit | miss | first miss |\n| --- | ---: | ---: | ---: |")
    for name, e in existence.items():
        print(f"| {name} | {e['hit']:.2f} | {e['miss']:.2f} | {e['first_miss']:.2f} |")


def print_aggregator(aggregator: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"\nC. Aggregator on {args.events} live events (each verified against MLflow)\n")
    bare, verifying, podium = aggregator["bare"], aggregator["verifying"], aggregator["podium"]
    print(f"| loop ({args.reps} interleaved reps) | events/s | vs bare | vs verifying floor |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| bare XREADGROUP + XACK (baseline) | {spread(bare, '{:,.0f}')} | 1.00x | |")
    floor = [v / b for v, b in zip(verifying, bare, strict=True)]
    print(
        f"| verifying floor: + the check's 3 SQL reads | {spread(verifying, '{:,.0f}')} | "
        f"{spread(floor, '{:.2f}')}x | 1.00x |"
    )
    vs_bare = [p / b for p, b in zip(podium, bare, strict=True)]
    vs_floor = [p / v for p, v in zip(podium, verifying, strict=True)]
    print(
        f"| podium aggregator | {spread(podium, '{:,.0f}')} | {spread(vs_bare, '{:.2f}')}x | "
        f"{spread(vs_floor, '{:.2f}')}x |"
    )
    print(f"\nMLflow look-ups: {spread([100 * x for x in aggregator['lookup_share']], '{:.0f}')} % of podium's time")


def print_latency(latencies: list[float], args: argparse.Namespace) -> None:
    print(f"\nD. Event -> PUBLISH at {args.rate} events/s for {args.seconds:g} s (aggregator in its own process)\n")
    if latencies:
        print(
            f"{len(latencies)} updates seen: p50 {pct(latencies, 50):.2f} ms, p99 {pct(latencies, 99):.2f} ms, "
            f"max {max(latencies):.2f} ms\n"
        )


def print_select(select: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(f"E. `podium select --json` over 12k runs, s ({args.reps} interleaved reps)\n")
    print("| process | seconds | ratio |\n| --- | ---: | ---: |")
    sel_ratio = [p / b for p, b in zip(select["podium"], select["raw"], strict=True)]
    print(f"| raw search_runs paging (baseline) | {spread(select['raw'], '{:.2f}')} | 1.00x |")
    print(f"| podium select --json | {spread(select['podium'], '{:.2f}')} | {spread(sel_ratio, '{:.2f}')}x |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--benchmarks", type=int, default=30)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--parts", default="ABCDE", help="which parts to run, e.g. A for the bookkeeping alone")
    ap.add_argument(
        "--write-back",
        choices=("on", "off"),
        default="on",
        help="A: podium writes the headline back onto the champion's run (PODIUM_WRITE_BACK) and the baseline "
        "makes the same write; off: neither does",
    )
    args = ap.parse_args()
    parts = set(args.parts.upper())
    os.environ["TQDM_DISABLE"] = "1"  # MLflow's download progress bars
    tmp = Path(tempfile.mkdtemp(prefix="podium-costs-"))
    server = start_redis(tmp / "redis")
    try:
        if parts & {"A", "B"}:
            pool = 2 * args.reps * args.benchmarks + 2 if "A" in parts and args.write_back == "on" else 0
            stores = {name: Store(name, tmp, server.url, args.write_back == "on", pool) for name in SIZES}
        if "A" in parts:
            print_bookkeeping(bench_bookkeeping(stores, args.reps, args.benchmarks), args)
        if "B" in parts:
            print_existence(bench_existence(stores))
        r = redis.Redis.from_url(server.url, decode_responses=True)
        if "C" in parts:
            r.flushall()  # A's result events name runs of the other stores
            print_aggregator(bench_aggregator(tmp, r, args.events, args.reps), args)
        if "D" in parts:
            r.flushall()
            print_latency(bench_latency(tmp, r, server.url, args.rate, args.seconds), args)
        if "E" in parts:
            print_select(bench_select(tmp, args.reps), args)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    finally_on_sigterm()
    main()
