"""The RunStore contract, one set of tests over both implementations: MLflow on a real sqlite store, and the
in-memory store of ``podium.testing`` that the unit tests of select, the aggregator and the worker path use.
A behaviour the in-memory store gets wrong shows here as a test that passes on one and fails on the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from podium.core.config import SelectionConfig
from podium.core.existing import ExistingBenchmark, result_metrics
from podium.core.identity import BenchmarkIdentity
from podium.core.records import Champion
from podium.core.run_tags import benchmark_run_tags
from podium.core.store import RunStore
from podium.core.tags import TagsRegistry
from podium.core.verification import DEFAULT_SKEW
from podium.errors import TrackingError
from podium.testing import MemoryRunStore
from podium.tracking.selected import select_store
from podium.tracking.tracker import MlflowTracking

S, T1, T2 = "s" * 64, "1" * 64, "2" * 64
CONFIG, OTHER_CONFIG = "c" * 64, "d" * 64
#: (study, trial, objective, stage) -> run id: a trial or refit run as training code writes it.
AddTrial = Callable[[str, str, float, str], str]


@dataclass
class Store:
    """One implementation under test, and how training code writes a trial run into it."""

    runs: RunStore
    add_trial: AddTrial


def mlflow_trial(client: MlflowClient, tags: TagsRegistry) -> AddTrial:
    def add(study: str, trial: str, objective: float, stage: str) -> str:
        exp = client.get_experiment_by_name("training")
        exp_id = exp.experiment_id if exp else client.create_experiment("training")
        grouping = {tags.grouping.study_key_hash: study, tags.grouping.trial_key_hash: trial}
        run = client.create_run(exp_id, tags={tags.stage.key: stage, **grouping})
        client.log_batch(run.info.run_id, metrics=[Metric("macro-f1", objective, 0, 0)])
        client.log_param(run.info.run_id, "backbone", "tiny")
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    return add


@pytest.fixture(params=["mlflow", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    tags = TagsRegistry()
    if request.param == "mlflow":
        uri = request.getfixturevalue("sqlite_store_uri")
        return Store(MlflowTracking.connect(uri, tags), mlflow_trial(MlflowClient(uri), tags))
    memory = MemoryRunStore(tags)
    return Store(memory, lambda s, t, f1, stage: memory.add_trial(s, t, f1, stage, params={"backbone": "tiny"}))


def champion_of(trial: str, run: str = "champ") -> tuple[Champion, BenchmarkIdentity]:
    return Champion(run, S, trial, "d", "e"), BenchmarkIdentity(run, "d", "e", CONFIG)


def write_benchmark(
    runs: RunStore,
    trial: str = T1,
    latency: float | None = 2.0,
    end: str = "FINISHED",
    champion_run: str = "champ",
    keyed: bool = True,
    start_time: int | None = None,
) -> str:
    """A benchmark run as the worker writes it: started with its tags, results recorded, then ended ``end``
    (FINISHED, FAILED, or RUNNING: not ended)."""
    champion, identity = champion_of(trial, champion_run)
    tags = benchmark_run_tags(runs.tags, identity, champion, backend="synthetic", target="cpu", worker="w")
    if not keyed:  # a legacy run: written before the key existed
        del tags[runs.tags.benchmark.key]
    run_id, _ = runs.start_benchmark_run(tags, run_name="contract", start_time=start_time)
    metrics = {} if latency is None else {"latency_batch_1_ms": latency, "latency_batch_1_p50_ms": latency}
    device = {runs.tags.benchmark.device: "cpu"}
    runs.record_results(run_id, metrics, {"latency": latency}, "benchmark.json", device, finish=end == "FINISHED")
    if end not in ("FINISHED", "RUNNING"):
        runs.fail_run(run_id, "RuntimeError: model exploded", status=end)
    return run_id


# ---------------------------------------------------------------- the existence check


def test_a_run_written_is_found_by_its_key(store: Store) -> None:
    champion, identity = champion_of(T1)
    assert store.runs.benchmark_exists(identity, champion) is None
    run_id = write_benchmark(store.runs)
    assert store.runs.benchmark_exists(identity, champion) == ExistingBenchmark(run_id, "benchmark_key")
    other = BenchmarkIdentity("champ", "d", "e", OTHER_CONFIG)  # another config: another key, not done
    assert store.runs.benchmark_exists(other, champion) is None


@pytest.mark.parametrize("end", ["FAILED", "KILLED", "RUNNING"])
def test_a_run_that_did_not_finish_is_not_found(store: Store, end: str) -> None:
    champion, identity = champion_of(T1)
    run_id = write_benchmark(store.runs, end=end)
    assert store.runs.benchmark_exists(identity, champion) is None
    assert store.runs.load_benchmarks(store.runs.experiment_ids()) == []
    facts = store.runs.run_facts([run_id])[run_id]  # the live check still sees it, and its status
    assert facts.status == end and facts.record is not None and facts.record.run_id == run_id


def test_a_finished_run_without_the_result_is_no_answer(store: Store) -> None:
    champion, identity = champion_of(T1)
    write_benchmark(store.runs, latency=None)
    assert store.runs.benchmark_exists(identity, champion) is None
    with_result = write_benchmark(store.runs)
    assert store.runs.benchmark_exists(identity, champion) == ExistingBenchmark(with_result, "benchmark_key")
    need_batch_8 = result_metrics([1, 8])  # done means every batch size asked for
    assert store.runs.benchmark_exists(identity, champion, result_metrics=need_batch_8) is None


def test_the_newest_run_with_the_result_answers(store: Store) -> None:
    champion, identity = champion_of(T1)
    now = int(time.time() * 1000)
    write_benchmark(store.runs, start_time=now - 3000)
    newest = write_benchmark(store.runs, start_time=now - 1000)  # a force_new run of the same key
    write_benchmark(store.runs, start_time=now - 2000)
    assert store.runs.benchmark_exists(identity, champion) == ExistingBenchmark(newest, "benchmark_key")


def test_a_run_whose_key_is_not_the_hash_of_its_parts_is_left_out(store: Store) -> None:
    honest = write_benchmark(store.runs)
    champion, identity = champion_of(T2)
    tags = benchmark_run_tags(store.runs.tags, identity, champion, backend="synthetic", target="cpu", worker="w")
    tags[store.runs.tags.benchmark.key] = "ab" * 32  # well-formed, but not the hash of the run's parts
    forged, _ = store.runs.start_benchmark_run(tags)
    store.runs.record_results(forged, {"latency_batch_1_ms": 1.0}, {}, "benchmark.json")
    store.runs.finish_run(forged)
    assert [b.run_id for b in store.runs.load_benchmarks(store.runs.experiment_ids())] == [honest]


def test_a_legacy_run_is_found_by_its_trial_only(store: Store) -> None:
    champion, identity = champion_of(T1)
    legacy = write_benchmark(store.runs, keyed=False)
    assert store.runs.benchmark_exists(identity, champion) == ExistingBenchmark(legacy, "legacy_fallback")
    other_trial, other_identity = champion_of(T2)
    assert store.runs.benchmark_exists(other_identity, other_trial) is None
    keyed = write_benchmark(store.runs)  # a keyed run answers before any legacy one
    assert store.runs.benchmark_exists(identity, champion) == ExistingBenchmark(keyed, "benchmark_key")


# ---------------------------------------------------------------- reads


def test_load_benchmarks_and_trials_return_what_was_written(store: Store) -> None:
    t1 = store.add_trial(S, T1, 0.9, "hpo_trial")
    t2 = store.add_trial(S, T2, 0.8, "hpo_trial")
    b1 = write_benchmark(store.runs, T1, 3.0)
    b2 = write_benchmark(store.runs, T2, 1.5, champion_run="champ-2")
    write_benchmark(store.runs, T2, 9.0, end="FAILED", champion_run="champ-2")
    ids = store.runs.experiment_ids()
    benchmarks = sorted(store.runs.load_benchmarks(ids, DEFAULT_SKEW), key=lambda r: r.trial_key_hash)
    assert [(b.run_id, b.study_key_hash, b.trial_key_hash, b.config_hash) for b in benchmarks] == [
        (b1, S, T1, CONFIG),
        (b2, S, T2, CONFIG),
    ]
    assert benchmarks[0].benchmark_key == champion_of(T1)[1].key
    assert benchmarks[1].metrics == {"latency_batch_1_ms": 1.5, "latency_batch_1_p50_ms": 1.5}
    trials = sorted(store.runs.load_trials(ids), key=lambda r: r.trial_key_hash)
    assert [(t.run_id, t.kind, t.objective, t.backbone) for t in trials] == [
        (t1, "trial", 0.9, "tiny"),
        (t2, "trial", 0.8, "tiny"),
    ]
    assert [t.run_id for t in store.runs.load_trial(S, T2)] == [t2]
    assert store.runs.load_trial(S, "3" * 64) == []


def test_champions_prefer_the_refit_run(store: Store) -> None:
    trial = store.add_trial(S, T1, 0.9, "hpo_trial")
    refit = store.add_trial(S, T1, 0.91, "refit")
    only_trial = store.add_trial(S, T2, 0.8, "hpo_trial")
    other_study = store.add_trial("o" * 64, T1, 0.7, "hpo_trial")
    ids = store.runs.experiment_ids()
    assert [(c.run_id, c.trial_key_hash) for c in store.runs.load_champions(ids, S)] == [(refit, T1), (only_trial, T2)]
    assert {c.run_id for c in store.runs.load_champions(ids)} == {refit, only_trial, other_study}
    assert store.runs.champion(trial) == Champion(trial, S, T1, "unknown", "unknown")
    with pytest.raises(TrackingError, match="not found"):
        store.runs.champion("f" * 32)


def test_a_run_whose_tags_break_a_rule_is_left_out(store: Store) -> None:
    good = store.add_trial(S, T1, 0.9, "hpo_trial")
    store.add_trial("o'brien", T1, 0.8, "hpo_trial")  # a quote: never put into a filter or a Redis key
    champion, identity = Champion("champ", S, T1, "d", "e"), BenchmarkIdentity("champ", "d", "e", CONFIG)
    tags = benchmark_run_tags(store.runs.tags, identity, champion, backend="synthetic", target="cpu", worker="w")
    tags[store.runs.tags.grouping.trial_key_hash] = "bad'trial"
    run_id, _ = store.runs.start_benchmark_run(tags)
    store.runs.record_results(run_id, {"latency_batch_1_ms": 1.0}, {}, "benchmark.json")
    store.runs.finish_run(run_id)
    ids = store.runs.experiment_ids()
    assert [t.run_id for t in store.runs.load_trials(ids)] == [good]
    assert store.runs.load_benchmarks(ids) == []
    facts = store.runs.run_facts([run_id, "f" * 32])
    assert list(facts) == [run_id]  # an unknown id is absent
    assert facts[run_id].record is None and "bad'trial" in (facts[run_id].refused or "")


def test_run_facts_carry_what_the_live_check_needs(store: Store) -> None:
    run_id = write_benchmark(store.runs)
    facts = store.runs.run_facts([run_id], metrics=["latency_batch_1_p50_ms"])[run_id]
    assert facts.status == "FINISHED" and facts.champion_run_id == "champ"
    assert (facts.data_fp, facts.eval_fp, facts.key_version) == ("d", "e", "1")
    assert facts.record is not None and facts.record.metrics == {"latency_batch_1_p50_ms": 2.0}  # only those asked


def test_select_over_the_store_names_the_same_best(store: Store) -> None:
    t1 = store.add_trial(S, T1, 0.90, "hpo_trial")
    store.add_trial(S, T2, 0.60, "hpo_trial")
    bench = write_benchmark(store.runs, T1, 4.0)  # better on both counts: the best under any weights
    write_benchmark(store.runs, T2, 5.0, champion_run="champ-2")
    chosen = select_store(store.runs, None, SelectionConfig(), DEFAULT_SKEW)
    (selection,) = chosen.selections
    assert selection.best is not None and (selection.best.trial_run_id, selection.best.benchmark_run_id) == (
        t1,
        bench,
    )
    (document,) = chosen.documents()
    assert document["best"]["params"] == {"backbone": "tiny"} and document["best"]["metrics"] == {"macro-f1": 0.9}
