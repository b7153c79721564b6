"""Faults from the field, round 3 (issue 25: breaks 3, 4 and 5) on real processes: a real redis-server, real
`podium worker` processes, a real MLflow sqlite store.

3. a model that hangs inside TorchScript: the hard time limit ends it through podium's attempt path (the run
   FAILED with the reason, the lock released, retried, then dead-lettered);
4. `docker stop` (SIGTERM, 5 s, SIGKILL) and `kill -9` of a worker mid-benchmark: the request comes back in
   seconds and another worker measures it; `podium status` shows it in flight meanwhile;
5. the MLflow store locked, and the artifact disk full, for a while: requests wait, no attempt is spent, nothing
   is dead-lettered, no run is left RUNNING.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from podium.coordination import keys
from podium.core.records import Champion
from podium.core.tags import TagsRegistry
from podium.producers.enqueue import enqueue_benchmark
from podium.tracking.tracker import MlflowTracking
from tests.pipeline_helpers import STUDY, Pipeline, runs_by_key, synthetic_config
from tests.servers import ServerProcess, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.server]


def champion(i: int, prefix: str = "e") -> Champion:
    return Champion(f"{prefix}{i:031d}", STUDY, f"{i:064x}", "d", "e")


def dead_letters(p: Pipeline) -> list[dict[str, str]]:
    return [fields for _, fields in p.redis.xrange(keys.DEAD_LETTERS_STREAM)]


def runs_of(store: str, key: str) -> list:
    client = MlflowClient(store)
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.benchmark_key = '{key}'", max_results=100
    )


def measuring(p: Pipeline, key: str, timeout: float = 120) -> dict[str, str]:
    """The heartbeat of ``key`` once its worker is inside the measurement."""
    beat: dict[str, str] = {}

    def inside() -> bool:
        nonlocal beat
        beat = p.redis.hgetall(keys.heartbeat(key))
        return beat.get("phase") in ("warmup", "measure")

    assert wait_until(inside, timeout=timeout), "\n".join(proc.log() for proc in p.processes.values())
    return beat


def main_of(p: Pipeline, beat: dict[str, str]) -> ServerProcess:
    """The `podium worker` process whose pool process writes this heartbeat."""
    child = int(beat["worker"].rsplit(":", 1)[-1])
    parent = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return next(proc for proc in p.processes.values() if proc.pid == parent)


def docker_stop(proc: ServerProcess, grace_s: float = 5.0) -> None:
    """What `docker stop` does: SIGTERM to the main process, then SIGKILL to all after the grace period."""
    os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.proc.wait(timeout=10)


def full_log(proc: ServerProcess) -> str:
    return (proc.folder / "server.log").read_text(errors="replace")


def error_of(run) -> str:
    return run.data.tags.get(TagsRegistry().benchmark.error, "")


# ---------------------------------------------------------------- 4. a worker stopped or killed mid-benchmark


@pytest.mark.slow
def test_a_stopped_or_killed_worker_gives_its_request_back_in_seconds(tmp_path: Path, store: str) -> None:
    # the visibility timeout stays at its default for PODIUM_MAX_BENCHMARK_S=600 (900 s): every wait below is far
    # shorter, so what brings the message back is podium, not kombu's redelivery
    p = Pipeline(
        tmp_path / "pipeline",
        store,
        lock_ttl_ms=2000,
        max_attempts=2,
        retry_backoff_s=0.2,
        max_benchmark_s=600,
        worker_liveness_s=2,
    )
    try:
        for name in ("worker-a", "worker-b", "worker-c"):
            p.start(name, "worker", "--target", "cpu", "--loglevel", "INFO")
        p.wait_workers(3)
        cfg = synthetic_config(service_ms=100, iterations=40)  # several seconds per benchmark

        # docker stop: SIGTERM, 5 s of grace, SIGKILL
        first = enqueue_benchmark(p.app, champion(1), cfg)
        stopped = main_of(p, measuring(p, first.benchmark_key))
        p.redis.incr(keys.attempts(first.request_id))  # spent here: one more counted attempt would dead-letter it
        docker_stop(stopped)
        assert p.app.AsyncResult(first.task_id).get(timeout=90)["status"] == "measured"
        runs = {r.info.status: r for r in runs_of(store, first.benchmark_key)}
        assert sorted(runs) == ["FAILED", "FINISHED"], runs
        assert "worker stopped" in error_of(runs["FAILED"])
        assert "worker stopped" in full_log(stopped)
        answers = sum(full_log(proc).count(f"[{first.task_id}] succeeded") for proc in p.processes.values())
        assert answers == 1  # given back once: kombu did not restore it again at the stopped worker's shutdown

        # kill -9 of a whole worker, no warning: the last worker's reaper requeues its message once its liveness
        # key expires (2 s here), and measures it; `podium status` shows the message in flight meanwhile
        second = enqueue_benchmark(p.app, champion(2), cfg)
        killed = main_of(p, measuring(p, second.benchmark_key))
        status = json.loads(p.run_cli("status", "--json"))
        held = [m for m in status["in_flight"] if m.get("request_id") == second.request_id]
        assert len(held) == 1 and held[0]["worker_alive"] is True and held[0]["age_s"] >= 0, status["in_flight"]
        os.killpg(killed.pid, signal.SIGKILL)
        killed.proc.wait(timeout=10)
        assert p.app.AsyncResult(second.task_id).get(timeout=90)["status"] == "measured"
        assert runs_by_key(store)[second.benchmark_key] == {"FINISHED": 1, "KILLED": 1}
        assert "Requeued message" in "".join(full_log(proc) for proc in p.processes.values())
        assert dead_letters(p) == []
        assert p.redis.hlen(keys.UNACKED) == 0 and p.redis.hlen(keys.INFLIGHT) == 0
    finally:
        p.stop()


# ---------------------------------------------------------------- 3. a model that hangs inside TorchScript


class Hang(torch.nn.Module):
    """Token ids in, logits out, after a loop that never ends, inside TorchScript (no Python between its steps,
    so Celery's soft time limit cannot interrupt it)."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = input_ids.float().unsqueeze(-1).repeat(1, 1, 5)
        i = 0
        while i >= 0:
            x = x * 1.0
            i += 1
        return x


def hung_champion(store: str, tmp: Path) -> Champion:
    """A refit run holding a TorchScript model that hangs, as training code would log it."""
    from podium.training import save_torchscript

    client = MlflowClient(store)
    exp = client.create_experiment("training", (tmp / "artifacts").as_uri())
    run = client.create_run(
        exp,
        tags={"code.stage": "refit", "code.grouping.study_key_hash": STUDY, "code.grouping.trial_key_hash": "9" * 64},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = save_torchscript(
            torch.jit.script(Hang()),
            tmp / "hang" / "model.pt",
            inputs=[{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "vocab_size": 50}],
        )
    client.log_artifact(run.info.run_id, str(path), "model")
    client.set_terminated(run.info.run_id)
    return MlflowTracking.connect(store, TagsRegistry()).champion(run.info.run_id)


@pytest.mark.slow
def test_a_model_hung_in_torchscript_is_ended_retried_and_dead_lettered(tmp_path: Path, store: str) -> None:
    p = Pipeline(
        tmp_path / "pipeline", store, lock_ttl_ms=2000, max_attempts=2, retry_backoff_s=0.2, max_benchmark_s=4
    )  # soft limit 4 s, hard limit 6 s
    try:
        worker = p.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        p.wait_workers(1)
        cfg = synthetic_config(backend="local", iterations=2, warmup_iterations=1, max_length=8)
        hung = enqueue_benchmark(p.app, hung_champion(store, tmp_path), cfg)
        answer = p.app.AsyncResult(hung.task_id).get(timeout=120)
        assert answer["status"] == "failed" and "TimeLimitExceeded" in answer["error"], answer
        (letter,) = dead_letters(p)
        assert letter["error"].startswith("attempt 2/2: TimeLimitExceeded"), letter
        assert json.loads(letter["payload"])["request_id"] == hung.request_id
        # the worker serves on; its next task ends the runs the time limit left RUNNING
        after = enqueue_benchmark(p.app, champion(3), synthetic_config())
        assert p.app.AsyncResult(after.task_id).get(timeout=120)["status"] == "measured"
        runs = runs_of(store, hung.benchmark_key)
        assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"], [r.info for r in runs]
        assert all("TimeLimitExceeded" in error_of(r) for r in runs), [error_of(r) for r in runs]
        assert not p.redis.exists(keys.lock(hung.benchmark_key), keys.attempts(hung.request_id), keys.ENDINGS)
        assert list(p.redis.scan_iter("podium:hold:*")) == []
        assert worker.proc.poll() is None
        log = full_log(worker)
        assert log.count("lock released; requeued") == 1 and log.count("lock released; dead-lettered") == 1, log
    finally:
        p.stop()


# ---------------------------------------------------------------- 5. the store or the disk away for a while


@pytest.mark.slow
def test_a_locked_store_and_a_full_disk_wait_and_spend_no_attempt(tmp_path: Path, store: str) -> None:
    artifacts = tmp_path / "artifacts"  # the benchmark runs' artifacts, beside the sqlite store
    artifacts.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(artifacts)], capture_output=True)
    # one attempt each: any failure counted as an attempt would dead-letter its request
    p = Pipeline(
        tmp_path / "pipeline", store, lock_ttl_ms=2000, max_attempts=1, retry_backoff_s=0.2, store_outage_s=300
    )
    try:
        worker = p.start("worker", "worker", "--target", "cpu", "--loglevel", "INFO")
        p.wait_workers(1)

        # the store locked mid-benchmark (MLflow waits 20 s for a sqlite lock, then fails): the run cannot be
        # ended then; the request waits, and its retry ends that run once the store is back
        first = enqueue_benchmark(p.app, champion(10), synthetic_config(service_ms=50, iterations=40))
        measuring(p, first.benchmark_key)
        db = sqlite3.connect(store.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            assert wait_until(lambda: "not counted as an attempt" in full_log(worker), timeout=120), full_log(worker)
        finally:
            db.execute("ROLLBACK")
            db.close()
        assert p.app.AsyncResult(first.task_id).get(timeout=120)["status"] == "measured"
        assert runs_by_key(store)[first.benchmark_key] == {"FINISHED": 1, "KILLED": 1}

        # the artifact disk full: every try fails writing the results (its run ended FAILED) until space frees
        if mounted.returncode == 0:
            filler = artifacts / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as f:
                while True:
                    f.write(b"x" * 4096)
                    f.flush()
            sent = [enqueue_benchmark(p.app, champion(20 + i), synthetic_config()) for i in range(2)]
            assert wait_until(lambda: full_log(worker).count("a full disk") >= 3, timeout=120), full_log(worker)
            filler.unlink()
            for s in sent:
                assert p.app.AsyncResult(s.task_id).get(timeout=120)["status"] == "measured"
            runs = runs_by_key(store)
            for s in sent:
                assert runs[s.benchmark_key]["FINISHED"] == 1 and set(runs[s.benchmark_key]) <= {"FINISHED", "FAILED"}
            assert sum(r["FAILED"] for r in runs.values()) >= 2, runs  # the tries the full disk failed
        assert dead_letters(p) == []
        assert all("RUNNING" not in counts for counts in runs_by_key(store).values())
    finally:
        p.stop()
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(artifacts)], check=False)
    if mounted.returncode != 0:
        pytest.skip(f"the full-disk half needs a tmpfs mount (root): {mounted.stderr.decode().strip()}")
