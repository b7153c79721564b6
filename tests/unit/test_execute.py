"""The worker's plain function: reuse, lock, fenced commit, lost lock (fakeredis + a real MLflow store)."""

from __future__ import annotations

import fakeredis
import pytest

from podium.coordination import keys
from podium.coordination.lock import FencedLock
from podium.core.config import BenchmarkConfig
from podium.core.messages import BenchmarkRequest, BenchmarkResult, decode
from podium.core.records import Champion
from podium.core.validation import parse_model
from podium.errors import LockBusy, LockLost, MessageError
from podium.measurement.lifecycle import Measured
from podium.producers.enqueue import build_request
from podium.testing import StalledFencing
from podium.tracking.tracker import MlflowTracking
from podium.workers.execute import WorkerDeps, execute

CHAMPION = Champion("c" * 32, "s" * 64, "t" * 64, "data-v1", "eval-v1")


def request(mode: str = "reuse_if_exists", **benchmarking) -> BenchmarkRequest:
    cfg = parse_model(
        BenchmarkConfig, {"run": {"mode": mode}, "benchmarking": {"backend": "synthetic", **benchmarking}}, "test"
    )
    return build_request(CHAMPION, cfg)


class Measure:
    def __init__(self, action=None):
        self.calls = 0
        self.action = action

    def __call__(self, req: BenchmarkRequest, progress) -> Measured:
        self.calls += 1
        progress(1, "measure", 1, 2)
        if self.action:
            self.action()
        progress(1, "measure", 2, 2)
        return Measured({"latency_batch_1_ms": 4.2}, {"ok": True}, "test-device", "b1:stable")


@pytest.fixture
def r():
    return fakeredis.FakeRedis(decode_responses=True)


def deps(r, tracking: MlflowTracking, measure: Measure) -> WorkerDeps:
    return WorkerDeps(redis=r, tracking=tracking, measure=measure, worker="test-worker", lock_ttl_ms=5000)


def finished(tracking: MlflowTracking):
    return [r for r in tracking.client.search_runs([tracking.benchmark_experiment_id()]) if r.info.status == "FINISHED"]


def test_measure_then_reuse_from_marker_then_from_mlflow(r, tracking: MlflowTracking) -> None:
    m = Measure()
    req = request()
    first = execute(req, deps(r, tracking, m))
    assert first.status == "measured" and first.fencing_token == 1
    assert r.get(keys.done(req.benchmark_key)) == first.run_id
    ((_, fields),) = r.xrange(keys.BENCHMARKS_STREAM)
    event = decode(BenchmarkResult, fields["data"])
    assert event.run_id == first.run_id and event.fencing_token == 1 and event.metrics == {"latency_batch_1_ms": 4.2}
    (run,) = finished(tracking)
    assert run.data.tags["code.benchmark.fencing_token"] == "1" and run.info.start_time == event.start_time
    assert r.get(keys.lock(req.benchmark_key)) is None and r.get(keys.heartbeat(req.benchmark_key)) is None

    again = execute(request(), deps(r, tracking, m))
    assert (again.status, again.via, again.run_id) == ("reused", "done_marker", first.run_id)

    r.flushall()  # Redis lost everything: MLflow, the source of truth, still knows
    third = execute(request(), deps(r, tracking, m))
    assert (third.status, third.via, third.run_id) == ("reused", "benchmark_key", first.run_id)
    assert r.get(keys.done(req.benchmark_key)) == first.run_id
    assert m.calls == 1 and len(finished(tracking)) == 1


def test_force_new_measures_again_under_the_lock(r, tracking: MlflowTracking) -> None:
    m = Measure()
    execute(request(), deps(r, tracking, m))
    forced = execute(request(mode="force_new"), deps(r, tracking, m))
    assert forced.status == "measured" and forced.fencing_token == 2 and m.calls == 2
    assert len(finished(tracking)) == 2


def test_busy_lock(r, tracking: MlflowTracking) -> None:
    req = request()
    FencedLock.for_benchmark(r, req.benchmark_key).acquire()
    with pytest.raises(LockBusy):
        execute(req, deps(r, tracking, Measure()))


def test_lost_lock_aborts_fails_the_run_and_publishes_nothing(r, tracking: MlflowTracking) -> None:
    req = request()

    def takeover() -> None:  # the TTL expired while this worker stalled; another took the key
        r.delete(keys.lock(req.benchmark_key))
        FencedLock.for_benchmark(r, req.benchmark_key).acquire()

    d = deps(r, tracking, Measure(takeover))
    d.fencing = StalledFencing()
    with pytest.raises(LockLost):
        execute(req, d)
    (run,) = tracking.client.search_runs([tracking.benchmark_experiment_id()])
    assert run.info.status == "FAILED"
    assert "lock" in run.data.tags["code.benchmark.error"]
    assert r.xlen(keys.BENCHMARKS_STREAM) == 0 and r.get(keys.done(req.benchmark_key)) is None


def test_a_tampered_key_is_refused(r, tracking: MlflowTracking) -> None:
    req = request()
    bad = req.model_copy(update={"benchmark_key": "f" * 64})
    with pytest.raises(MessageError, match="does not match its parts"):
        execute(bad, deps(r, tracking, Measure()))


def test_measurement_failure_ends_failed_and_releases(r, tracking: MlflowTracking) -> None:
    def boom() -> None:
        raise RuntimeError("server down")

    req = request()
    with pytest.raises(RuntimeError):
        execute(req, deps(r, tracking, Measure(boom)))
    (run,) = tracking.client.search_runs([tracking.benchmark_experiment_id()])
    assert run.info.status == "FAILED" and run.data.tags["code.benchmark.error"] == "RuntimeError: server down"
    assert r.get(keys.lock(req.benchmark_key)) is None


def test_done_markers_and_fences_expire(r, tracking: MlflowTracking) -> None:
    req = request()
    d = deps(r, tracking, Measure())
    d.marker_ttl_s = 3600
    execute(req, d)
    assert 3500 < r.ttl(keys.done(req.benchmark_key)) <= 3600
    assert 3500 < r.ttl(keys.fence(req.benchmark_key)) <= 3600
