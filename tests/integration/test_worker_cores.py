"""Workers of one host on cores of their own: real redis-server, real `podium worker` processes (Celery
prefork) started on the same two cores (``taskset``, so the host has 2 usable cores whatever this machine
has), real MLflow sqlite store. What each run records says where it ran."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.coordination.cores import CoreClaims, host_usage
from podium.core.cores import format_core_list
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import enqueue_benchmark
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import Pipeline, finished_runs, synthetic_config, trained
from tests.servers import spawn, wait_until

pytestmark = pytest.mark.server
STUDY = "c0" * 32
TWO_CORES = sorted(os.sched_getaffinity(0))[:2]
#: ~2 s of measuring per request (2 windows of 10 requests of 100 ms).
SLOW = {"service_ms": 100.0, "iterations": 10}
#: ~6 s: a request sent once another is seen measuring is taken up while it still measures, even on a loaded host.
LONG = {"service_ms": 100.0, "iterations": 30}


@pytest.fixture
def store(tmp_path: Path, _migrated_db: Path) -> str:
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def pipeline(tmp_path: Path, store: str):
    if len(TWO_CORES) < 2:
        pytest.skip("needs 2 cores")
    p = Pipeline(tmp_path / "pipeline", store, retry_backoff_s=0.2)
    try:
        yield p
    finally:
        p.stop()


def start_workers(p: Pipeline, count: int, loglevel: str = "WARNING") -> None:
    """``count`` workers pinned (by taskset) to the same 2 cores: a 2-core host."""
    cores = ",".join(map(str, TWO_CORES))
    for i in range(count):
        name = f"worker-{i}"
        folder = p.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        cmd = ["taskset", "-c", cores, sys.executable, "-m", "podium", "worker", "--target", "cpu"]
        p.processes[name] = spawn([*cmd, "--loglevel", loglevel], folder, env=p.env, cwd=p.tmp)
    p.wait_workers(count)


def champion(i: int) -> Champion:
    return Champion(f"core{i:028d}", STUDY, f"{i:064x}", "d", "e")


def measured_runs(p: Pipeline, store: str, sent: list, tmp: Path) -> list[dict]:
    """Each request's FINISHED run: start, end, its device tag and benchmark.json's device section."""
    try:
        results = [p.app.AsyncResult(s.task_id).get(timeout=120) for s in sent]
    except Exception as exc:
        logs = "\n".join(f"--- {n}\n{w.log()}" for n, w in p.processes.items())
        pytest.fail(f"{type(exc).__name__}: {exc}; the workers said:\n{logs}")
    assert [r["status"] for r in results] == ["measured"] * len(sent), results
    client, runs = MlflowClient(store), []
    for s in sent:
        (run,) = finished_runs(store, s.benchmark_key)
        summary = json.loads(Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp))).read_text())
        runs.append(
            {
                "start": run.info.start_time,
                "end": run.info.end_time,
                "tag": run.data.tags["code.benchmark.device"],
                "device": summary["device"],
                "placement": summary["device"]["placement"],
            }
        )
    return runs


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def claimed_cores(p: Pipeline) -> list[int]:
    """The cores of this host claimed now (``podium status``'s view)."""
    return sorted(c["core"] for host in host_usage(p.redis) for c in host["claimed"])


def measuring(p: Pipeline, cores: int) -> None:
    """Wait until ``cores`` cores are claimed: that many measurements are under way."""
    assert wait_until(lambda: len(claimed_cores(p)) >= cores, timeout=120), f"never {cores} core(s) claimed"


def test_two_workers_of_one_host_measure_on_disjoint_cores(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    start_workers(pipeline, 2)
    sent = [enqueue_benchmark(pipeline.app, champion(0), synthetic_config(**LONG))]
    measuring(pipeline, 1)  # the first one measures: the second is sent while it does
    sent.append(enqueue_benchmark(pipeline.app, champion(1), synthetic_config(**SLOW)))
    measuring(pipeline, 2)
    first, second = measured_runs(pipeline, store, sent, tmp_path)
    assert overlap(first, second), "the two measurements did not run at once; nothing was shown"
    for run in (first, second):
        where = run["placement"]
        assert where["usable_cores"] == TWO_CORES and where["threads"] == 1 and len(where["cores"]) == 1
        assert where["pinned"] and where["affinity"] == where["cores"]  # the affinity while it measured
        assert not where["contended"] and "contended" not in run["tag"]
        assert where["cpu"] and where["host"] == os.uname().nodename
    assert set(first["placement"]["cores"]).isdisjoint(second["placement"]["cores"])
    (host,) = host_usage(pipeline.redis)  # what `podium status` shows: both cores given back
    assert host["usable"] == format_core_list(TWO_CORES) and host["claimed"] == []


def test_torch_threads_of_a_worker_measurement_come_from_the_config(
    pipeline: Pipeline, store: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    start_workers(pipeline, 1)
    tracking = MlflowTracking.connect(store, TagsRegistry())
    model = tracking.champion(trained(store, tmp_path, "7" * 64, 0.9))
    fast = {"iterations": 5, "warmup_iterations": 1, "max_length": 8, "stability": {"max_windows": 2}}
    sent = [
        enqueue_benchmark(pipeline.app, model, synthetic_config(**fast, backend="local", threads=t)) for t in (2, 1)
    ]
    assert len({s.benchmark_key for s in sent}) == 2  # threads are part of the key
    runs = measured_runs(pipeline, store, sent, tmp_path)
    for threads, run in zip((2, 1), runs, strict=True):
        assert run["device"]["threads"] == threads and run["placement"]["threads"] == threads
        assert len(run["placement"]["cores"]) == threads and run["device"]["affinity"] == run["placement"]["cores"]


def test_a_third_worker_on_a_two_core_host_waits(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    start_workers(pipeline, 3, loglevel="INFO")
    sent = [enqueue_benchmark(pipeline.app, champion(10 + i), synthetic_config(**LONG)) for i in range(2)]
    measuring(pipeline, 2)  # both cores held: the third request is sent while they are
    sent.append(enqueue_benchmark(pipeline.app, champion(12), synthetic_config(**SLOW)))
    runs = measured_runs(pipeline, store, sent, tmp_path)
    # intervals that overlap pairwise share a moment: three at once on two cores would show here
    assert not all(overlap(a, b) for a, b in itertools.combinations(runs, 2)), runs
    assert not any(run["placement"]["contended"] for run in runs)
    logs = "\n".join(p.log() for p in pipeline.processes.values())
    assert "free core(s) needed" in logs  # a worker found both cores held, and its request waited


def hold_both_cores(p: Pipeline) -> list:
    """The host's two cores claimed, as two other workers measuring would hold them."""
    claims = [CoreClaims(p.redis, os.uname().nodename, f"other:{i}", ttl_ms=600_000) for i in range(2)]
    held = [c.claim(1, TWO_CORES) for c in claims]
    assert all(held)
    return list(zip(claims, held, strict=True))


def test_a_request_waits_while_the_hosts_cores_are_held_then_runs_alone(
    pipeline: Pipeline, store: str, tmp_path: Path
) -> None:
    held = hold_both_cores(pipeline)
    start_workers(pipeline, 1, loglevel="INFO")
    (sent,) = [enqueue_benchmark(pipeline.app, champion(30), synthetic_config())]
    worker = pipeline.processes["worker-0"]
    assert wait_until(lambda: worker.log().count("free core(s) needed") >= 2, 60), worker.log()  # tried, waits
    assert not pipeline.app.AsyncResult(sent.task_id).ready()
    (host,) = json.loads(pipeline.run_cli("status", "--json"))["cores"]  # what `podium status` shows
    assert host["usable_count"] == 2 and [c["worker"] for c in host["claimed"]] == ["other:0", "other:1"]
    assert "Cores per host" in pipeline.run_cli("status")
    for claims, claim in held:
        claims.release(claim)
    (run,) = measured_runs(pipeline, store, [sent], tmp_path)
    assert not run["placement"]["contended"] and len(run["placement"]["cores"]) == 1


def test_a_request_told_not_to_wait_measures_flagged_contended(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    held = hold_both_cores(pipeline)
    start_workers(pipeline, 1)
    sent = enqueue_benchmark(pipeline.app, champion(40), synthetic_config(busy_cores="contended"))
    (run,) = measured_runs(pipeline, store, [sent], tmp_path)
    where = run["placement"]
    assert where["contended"] and where["cores"] == TWO_CORES and "shares cores" in where["contended_why"]
    assert run["tag"].startswith("synthetic") and "| contended: only cores none were free" in run["tag"]
    for claims, claim in held:
        claims.release(claim)


def test_a_killed_workers_cores_come_back(pipeline: Pipeline, store: str, tmp_path: Path) -> None:
    start_workers(pipeline, 1)
    both = synthetic_config(**LONG, threads=2)
    enqueue_benchmark(pipeline.app, champion(50), both)
    assert wait_until(lambda: len(host_usage(pipeline.redis)[0]["claimed"]) == 2, 60)  # measuring on both cores
    os.killpg(pipeline.processes["worker-0"].pid, signal.SIGKILL)  # no release: the claims stay behind
    assert len(host_usage(pipeline.redis)[0]["claimed"]) == 2
    pipeline.processes["worker-1"] = pipeline.processes.pop("worker-0")
    start_workers(pipeline, 1)
    sent = enqueue_benchmark(pipeline.app, champion(51), synthetic_config(**SLOW, threads=2))
    (run,) = measured_runs(pipeline, store, [sent], tmp_path)  # once the dead worker's claims lapsed (lock TTL)
    assert run["placement"]["cores"] == TWO_CORES and not run["placement"]["contended"]
