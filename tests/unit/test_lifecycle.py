"""``benchmark_champion`` (the worker path's steps in a row) over the in-memory run store: the fix plan's
idempotency scenarios, a failed measurement, a run with the key but no result, a legacy run. The same scenarios
run on real MLflow stores in tests/integration/test_fix_plan.py; the store's contract in
tests/unit/test_run_store_contract.py."""

from __future__ import annotations

import pytest

from podium.core.config import BenchmarkConfig
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags, identity_for
from podium.core.validation import parse_model
from podium.measurement.lifecycle import Measured, benchmark_champion
from podium.settings.files import config_hash_of
from podium.testing import MemoryRunStore

STUDY, TRIAL = "a" * 64, "b" * 64


def make_config(mode: str = "reuse_if_exists", **benchmarking: object) -> BenchmarkConfig:
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking, "run": {"mode": mode}}, "test")


class CountingMeasure:
    """A deterministic measurement that counts its calls, so that a reuse is visible."""

    def __init__(self, latency: float = 12.5) -> None:
        self.calls = 0
        self.latency = latency

    def __call__(self, config: BenchmarkConfig, champion: Champion) -> Measured:
        self.calls += 1
        sizes = config.benchmarking.batch_sizes
        metrics = {f"latency_batch_{b}_ms": self.latency * b for b in sizes}
        return Measured(metrics, {"batch_sizes": sizes}, device="test-cpu", stability="b1:stable")


@pytest.fixture
def store() -> MemoryRunStore:
    return MemoryRunStore()


@pytest.fixture
def champion(store: MemoryRunStore) -> Champion:
    store.add_trial(STUDY, TRIAL, 0.9)
    store.add_trial(STUDY, TRIAL, 0.91, stage=store.tags.stage.refit)
    (chosen,) = store.load_champions(store.experiment_ids())
    return chosen


def benchmark_runs(store: MemoryRunStore, status: str | None = None) -> list:
    stage = store.tags.stage
    return [
        run
        for run in store.runs.values()
        if run.tags.get(stage.key) == stage.benchmark and (status is None or run.status == status)
    ]


def test_a_config_change_measures_again_under_a_new_key(store: MemoryRunStore, champion: Champion) -> None:
    measure = CountingMeasure()
    first = benchmark_champion(champion, make_config(batch_sizes=[1], max_length=512), store, measure, worker="w")
    second = benchmark_champion(champion, make_config(batch_sizes=[8], max_length=256), store, measure, worker="w")
    assert (first.status, second.status) == ("measured", "measured") and measure.calls == 2
    assert first.benchmark_key != second.benchmark_key
    runs = benchmark_runs(store, "FINISHED")
    assert {r.tags["benchmark_key"] for r in runs} == {first.benchmark_key, second.benchmark_key}
    assert {tuple(r.artifacts["benchmark.json"]["batch_sizes"]) for r in runs} == {(1,), (8,)}


def test_the_same_config_is_reused_and_force_new_measures_under_the_same_key(
    store: MemoryRunStore, champion: Champion
) -> None:
    measure = CountingMeasure()
    cfg = make_config(batch_sizes=[1])
    first = benchmark_champion(champion, cfg, store, measure, worker="w")
    second = benchmark_champion(champion, cfg, store, measure, worker="w")
    assert (second.status, second.via, second.run_id) == ("reused", "benchmark_key", first.run_id)
    assert measure.calls == 1 and len(benchmark_runs(store)) == 1
    forced = benchmark_champion(champion, make_config("force_new", batch_sizes=[1]), store, measure, worker="w")
    assert forced.status == "measured" and forced.benchmark_key == first.benchmark_key
    assert measure.calls == 2 and len(benchmark_runs(store, "FINISHED")) == 2


def test_the_key_checked_is_the_key_written(store: MemoryRunStore, champion: Champion) -> None:
    cfg = make_config()
    outcome = benchmark_champion(champion, cfg, store, CountingMeasure(), worker="w", fencing_token=7)
    identity = identity_for(champion, config_hash_of(cfg))
    (run,) = benchmark_runs(store)
    assert run.tags["benchmark_key"] == identity.key == outcome.benchmark_key
    assert run.tags["code.benchmark.champion_run_id"] == champion.run_id
    assert run.tags["code.benchmark.fencing_token"] == "7"
    assert (run.tags["code.benchmark.device"], run.tags["code.benchmark.stability"]) == ("test-cpu", "b1:stable")
    assert store.benchmark_exists(identity, champion) is not None


def test_a_failed_measurement_leaves_a_failed_run_and_is_measured_again(
    store: MemoryRunStore, champion: Champion
) -> None:
    def broken(config: BenchmarkConfig, champion: Champion) -> Measured:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        benchmark_champion(champion, make_config(), store, broken, worker="w")
    (run,) = benchmark_runs(store)
    assert run.status == "FAILED" and run.tags["code.benchmark.error"] == "RuntimeError: model exploded"
    measure = CountingMeasure()
    again = benchmark_champion(champion, make_config(), store, measure, worker="w")
    assert again.status == "measured" and measure.calls == 1  # a FAILED run is no answer


def test_a_finished_run_without_the_results_asked_for_is_measured_again(
    store: MemoryRunStore, champion: Champion
) -> None:
    measure = CountingMeasure()
    first = benchmark_champion(champion, make_config(batch_sizes=[1]), store, measure, worker="w")
    del store.runs[first.run_id].metrics["latency_batch_1_ms"]  # FINISHED, but its result lost (written by hand)
    again = benchmark_champion(champion, make_config(batch_sizes=[1]), store, measure, worker="w")
    assert again.status == "measured" and again.run_id != first.run_id and measure.calls == 2


def test_a_legacy_run_of_the_trial_is_reused(store: MemoryRunStore, champion: Champion, caplog) -> None:
    cfg = make_config()
    identity = identity_for(champion, config_hash_of(cfg))
    tags = benchmark_run_tags(store.tags, identity, champion, backend="triton", target="gpu", worker="old")
    del tags[store.tags.benchmark.key], tags[store.tags.benchmark.config_hash]  # written before either existed
    legacy = store.log_benchmark_run(tags, {"latency_batch_1_ms": 3.0}, {})
    measure = CountingMeasure()
    outcome = benchmark_champion(champion, cfg, store, measure, worker="w")
    assert (outcome.status, outcome.via, outcome.run_id, measure.calls) == ("reused", "legacy_fallback", legacy, 0)
    assert any("legacy fallback" in r.getMessage() and legacy in r.getMessage() for r in caplog.records)
