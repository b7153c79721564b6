"""The fix plan's four scenarios and DESIGN.md's identity rules, on a real MLflow sqlite store and on a real
MLflow tracking server over HTTP (PostgreSQL backend store, served artifacts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from podium.core.config import BenchmarkConfig, SelectionConfig
from podium.core.records import Champion
from podium.core.run_tags import identity_for
from podium.core.state import select_all
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.errors import UnsafeValueError
from podium.measurement.lifecycle import Measured, benchmark_champion
from podium.producers.backfill import filter_missing_benchmarks
from podium.settings.files import config_hash_of
from podium.tracking.tracker import MlflowTracking

STUDY, TRIAL = "a" * 64, "b" * 64


@pytest.fixture(params=["sqlite", "mlflow-server"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """Each scenario on both stores a team may have: a sqlite file and an HTTP tracking server."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store_uri")
    return request.getfixturevalue("server_store_uri")


def make_config(**benchmarking) -> BenchmarkConfig:
    return parse_model(BenchmarkConfig, {"benchmarking": benchmarking}, "test")


class CountingMeasure:
    """A deterministic measurement: counts calls so a skip is visible."""

    def __init__(self, latency: float = 12.5):
        self.calls = 0
        self.latency = latency

    def __call__(self, config: BenchmarkConfig, champion: Champion) -> Measured:
        self.calls += 1
        metrics = {f"latency_batch_{b}_ms": self.latency * b for b in config.benchmarking.batch_sizes}
        metrics |= {f"latency_batch_{b}_p50_ms": self.latency * b for b in config.benchmarking.batch_sizes}
        return Measured(metrics, {"batch_sizes": config.benchmarking.batch_sizes}, device="test-cpu")


def training_runs(
    client: MlflowClient,
    tags: TagsRegistry = TagsRegistry(),
    study: str = STUDY,
    trial: str = TRIAL,
    f1: float = 0.9,
    with_refit: bool = True,
) -> str:
    """A trial (and refit) run written by training code with the plain client; returns the champion id."""
    exp = client.get_experiment_by_name("training")
    exp_id = exp.experiment_id if exp else client.create_experiment("training")
    champion = ""
    stages = [tags.stage.hpo_trial] + ([tags.stage.refit] if with_refit else [])
    for stage in stages:
        run = client.create_run(
            exp_id,
            tags={
                tags.stage.key: stage,
                tags.grouping.study_key_hash: study,
                tags.grouping.trial_key_hash: trial,
            },
        )
        client.log_batch(run.info.run_id, metrics=[Metric("macro-f1", f1, 0, 0)])
        client.log_param(run.info.run_id, "backbone", "tiny")
        client.set_terminated(run.info.run_id)
        champion = run.info.run_id
    return champion


def benchmark_runs(client: MlflowClient, key: str | None = None) -> list:
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`code.stage` = 'benchmark'" + (f" AND tags.benchmark_key = '{key}'" if key else ""),
    )


# ---------------------------------------------------------------- Test 1 and 2: idempotency


def test_1_config_change_creates_a_new_benchmark(
    client: MlflowClient, tracking: MlflowTracking, tmp_path: Path
) -> None:
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    measure = CountingMeasure()
    first = benchmark_champion(champion, make_config(batch_sizes=[1], max_length=512), tracking, measure, worker="w")
    second = benchmark_champion(champion, make_config(batch_sizes=[8], max_length=256), tracking, measure, worker="w")
    assert (first.status, second.status) == ("measured", "measured")
    assert first.benchmark_key != second.benchmark_key
    assert measure.calls == 2
    runs = benchmark_runs(client)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["benchmark_key"] for r in runs} == {first.benchmark_key, second.benchmark_key}
    for run in runs:  # benchmark.json went straight to each run's artifact location, where MLflow finds it
        summary = client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp_path / run.info.run_id))
        assert json.loads(Path(summary).read_text())["batch_sizes"] in ([1], [8])


def test_2_same_config_is_skipped(client: MlflowClient, tracking: MlflowTracking) -> None:
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    measure = CountingMeasure()
    cfg = make_config(batch_sizes=[1], max_length=512)
    first = benchmark_champion(champion, cfg, tracking, measure, worker="w")
    second = benchmark_champion(champion, cfg, tracking, measure, worker="w")
    assert second.status == "reused" and second.via == "benchmark_key"
    assert second.run_id == first.run_id and measure.calls == 1
    assert len(benchmark_runs(client)) == 1
    assert filter_missing_benchmarks([champion], cfg, tracking) == []
    # force_new skips the check (a new run), the key stays the same
    forced = cfg.model_copy(update={"run": cfg.run.model_copy(update={"mode": "force_new"})})
    third = benchmark_champion(champion, forced, tracking, measure, worker="w")
    assert third.status == "measured" and third.benchmark_key == first.benchmark_key
    assert len(benchmark_runs(client, first.benchmark_key)) == 2


def test_the_key_checked_is_the_key_written(client: MlflowClient, tracking: MlflowTracking, tmp_path: Path) -> None:
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    cfg = make_config()
    outcome = benchmark_champion(champion, cfg, tracking, CountingMeasure(), worker="w")
    identity = identity_for(champion, config_hash_of(cfg))
    (run,) = benchmark_runs(client)
    tags = run.data.tags
    assert tags["benchmark_key"] == identity.key == outcome.benchmark_key
    # every part of the key is a tag of its own, so the key can be explained
    assert tags["code.benchmark.config_hash"] == identity.config_hash
    assert tags["code.benchmark.champion_run_id"] == champion.run_id
    assert tags["code.benchmark.data_fp"] == identity.data_fp
    assert tags["code.benchmark.eval_fp"] == identity.eval_fp
    for name in (
        "code.stage",
        "code.grouping.study_key_hash",
        "code.grouping.trial_key_hash",
        "code.benchmark.backend",
        "code.benchmark.device",
        "code.benchmark.worker",
    ):
        assert tags[name]
    assert tracking.benchmark_exists(identity, champion).run_id == run.info.run_id
    artifact = Path(client.download_artifacts(run.info.run_id, "benchmark.json", str(tmp_path)))
    assert json.loads(artifact.read_text()) == {"batch_sizes": [1]}


def test_a_failed_measurement_leaves_a_failed_run_not_a_finished_one(
    client: MlflowClient, tracking: MlflowTracking
) -> None:
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())

    def broken(config: BenchmarkConfig, champion: Champion) -> Measured:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        benchmark_champion(champion, make_config(), tracking, broken, worker="w")
    (run,) = benchmark_runs(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["code.benchmark.error"] == "RuntimeError: model exploded"
    assert len(filter_missing_benchmarks([champion], make_config(), tracking)) == 1


# ---------------------------------------------------------------- Test 3: outlier-proof selection


def log_benchmark(
    client: MlflowClient,
    exp_id: str,
    key: str | None,
    latency: float,
    start: int,
    config_hash: str | None = None,
    tags: TagsRegistry = TagsRegistry(),
    trial: str = TRIAL,
) -> str:
    run = client.create_run(exp_id, start_time=start)
    run_tags = {
        tags.stage.key: tags.stage.benchmark,
        tags.grouping.study_key_hash: STUDY,
        tags.grouping.trial_key_hash: trial,
    }
    if key:
        run_tags |= {"benchmark_key": key, "code.benchmark.config_hash": config_hash or "c" * 64}
    client.log_batch(
        run.info.run_id,
        # the mean and the p50 (the ranked figure by default), equal here
        metrics=[Metric("latency_batch_1_ms", latency, start, 0), Metric("latency_batch_1_p50_ms", latency, start, 0)],
        tags=[RunTag(k, v) for k, v in run_tags.items()],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@pytest.mark.parametrize(("aggregation", "expected"), [("latest", 210.0), ("median", 200.0), ("mean", 186.6667)])
def test_3_three_runs_one_key_never_the_outlier(
    client: MlflowClient, tracking: MlflowTracking, aggregation: str, expected: float
) -> None:
    training_runs(client)
    exp = client.create_experiment("benchmarks")
    ids = [log_benchmark(client, exp, "k" * 64, lat, start) for lat, start in ((200, 1000), (150, 2000), (210, 3000))]
    cfg = parse_model(SelectionConfig, {"benchmark": {"latency_aggregation": aggregation}}, "test")
    ids_all = tracking.experiment_ids()
    (sel,), _ = select_all(tracking.load_benchmarks(ids_all), tracking.load_trials(ids_all), cfg)
    (cand,) = sel.candidates
    assert cand.latency_ms == pytest.approx(expected, abs=1e-3)
    assert cand.latency_ms != 150.0 and cand.benchmark_runs_count == 3
    if aggregation == "latest":
        assert cand.benchmark_run_id == ids[2]
    if aggregation == "median":
        assert cand.benchmark_run_id == ids[0]


def test_replaying_a_run_does_not_change_the_median(client: MlflowClient, tracking: MlflowTracking) -> None:
    training_runs(client)
    exp = client.create_experiment("benchmarks")
    for lat, start in ((200, 1000), (150, 2000), (210, 3000)):
        log_benchmark(client, exp, "k" * 64, lat, start)
    ids = tracking.experiment_ids()
    records = tracking.load_benchmarks(ids)
    (once,), _ = select_all(records, tracking.load_trials(ids), SelectionConfig())
    (replayed,), _ = select_all([*records, records[1], records[1]], tracking.load_trials(ids), SelectionConfig())
    assert once.best.latency_ms == replayed.best.latency_ms == 200.0
    assert replayed.best.benchmark_runs_count == 3


def test_two_configs_for_one_trial_never_compete(client: MlflowClient, tracking: MlflowTracking) -> None:
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    benchmark_champion(champion, make_config(batch_sizes=[1]), tracking, CountingMeasure(5.0), worker="w")
    benchmark_champion(
        champion, make_config(batch_sizes=[1], max_length=64), tracking, CountingMeasure(1.0), worker="w"
    )
    ids = tracking.experiment_ids()
    sels, _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), SelectionConfig())
    assert len(sels) == 2
    assert sorted(s.best.latency_ms for s in sels) == [1.0, 5.0]
    assert all(len(s.candidates) == 1 for s in sels)


# ---------------------------------------------------------------- Test 4: runs without benchmark_key


def test_4_legacy_runs_fallback_and_warn(
    client: MlflowClient, tracking: MlflowTracking, caplog: pytest.LogCaptureFixture
) -> None:
    training_runs(client)
    exp = client.create_experiment("old-benchmarks")
    legacy_ids = [log_benchmark(client, exp, None, lat, start) for lat, start in ((20, 1), (15, 2), (21, 3))]
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    cfg = make_config()
    measure = CountingMeasure()
    with caplog.at_level(logging.WARNING):
        outcome = benchmark_champion(champion, cfg, tracking, measure, worker="w")
    assert outcome.status == "reused" and outcome.via == "legacy_fallback" and measure.calls == 0
    assert outcome.run_id in legacy_ids
    assert f"Benchmark run {outcome.run_id} has no benchmark_key tag" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert filter_missing_benchmarks([champion], cfg, tracking) == []
    assert "legacy fallback" in caplog.text
    ids = tracking.experiment_ids()
    (sel,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), SelectionConfig())
    assert sel.benchmark_config_hash is None
    assert sel.best.benchmark_key == f"legacy_{TRIAL}"
    assert sel.best.latency_ms == 20.0 and sel.best.benchmark_runs_count == 3


def test_legacy_runs_added_after_the_first_check_are_found_once_invalidated(
    client: MlflowClient, tracking: MlflowTracking
) -> None:
    """A study written only by podium never pays the legacy query again (cached per study); once legacy runs
    appear and the epoch is bumped (``podium backfill``, a sweep), the fallback finds them."""
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    identity = identity_for(champion, config_hash_of(make_config()))
    assert tracking.benchmark_exists(identity, champion, legacy_epoch=0) is None  # learned: no legacy runs
    exp = client.create_experiment("old-benchmarks")
    legacy = log_benchmark(client, exp, None, 20.0, 1)
    assert tracking.benchmark_exists(identity, champion, legacy_epoch=0) is None  # still believed, within the TTL
    found = tracking.benchmark_exists(identity, champion, legacy_epoch=1)  # the epoch moved: asked again
    assert found is not None and (found.run_id, found.via) == (legacy, "legacy_fallback")


def test_a_study_mixing_podium_and_legacy_runs(client: MlflowClient, tracking: MlflowTracking) -> None:
    t_legacy, t_podium, t_new = "1" * 64, "2" * 64, "3" * 64
    for trial in (t_legacy, t_podium, t_new):
        training_runs(client, trial=trial)
    champions = {c.trial_key_hash: c for c in tracking.load_champions(tracking.experiment_ids())}
    exp = client.create_experiment("old-benchmarks")
    legacy = log_benchmark(client, exp, None, 20.0, 1, trial=t_legacy)
    cfg = make_config()
    measured = benchmark_champion(champions[t_podium], cfg, tracking, CountingMeasure(), worker="w")
    outcomes = {t: benchmark_champion(champions[t], cfg, tracking, CountingMeasure(), worker="w") for t in champions}
    assert (outcomes[t_legacy].status, outcomes[t_legacy].via, outcomes[t_legacy].run_id) == (
        "reused",
        "legacy_fallback",
        legacy,
    )
    assert (outcomes[t_podium].status, outcomes[t_podium].via, outcomes[t_podium].run_id) == (
        "reused",
        "benchmark_key",
        measured.run_id,
    )
    assert outcomes[t_new].status == "measured"


def test_fallback_never_overrides_a_keyed_run_of_another_config(client: MlflowClient, tracking: MlflowTracking) -> None:
    """A keyed run of config A must not satisfy config B through the fallback: fallback is for untagged runs."""
    training_runs(client)
    (champion,) = tracking.load_champions(tracking.experiment_ids())
    benchmark_champion(champion, make_config(batch_sizes=[1]), tracking, CountingMeasure(), worker="w")
    assert len(filter_missing_benchmarks([champion], make_config(batch_sizes=[4]), tracking)) == 1


def test_other_tag_names_are_read_through_the_registry_alone(tmp_path: Path, store_uri: str) -> None:
    legacy_tags = parse_model(
        TagsRegistry,
        {
            "grouping": {"study_key_hash": "code.study_key_hash", "trial_key_hash": "code.trial_key_hash"},
            "stage": {"hpo_trial": "hpo", "refit": "hpo_refit"},
        },
        "tags.yaml",
    )
    client = MlflowClient(tracking_uri=store_uri)
    champion_id = training_runs(client, legacy_tags)
    run = client.get_run(champion_id)
    assert run.data.tags["code.stage"] == "hpo_refit" and "code.study_key_hash" in run.data.tags
    exp = client.create_experiment("benchmarks")
    run_tags = {
        "code.stage": "benchmark",
        "code.study_key_hash": STUDY,
        "code.trial_key_hash": TRIAL,
        "benchmark_key": "k" * 64,
        "code.benchmark.config_hash": "c" * 64,
    }
    for lat in (3.0, 4.0, 5.0):
        r = client.create_run(exp, tags=run_tags)
        client.log_batch(r.info.run_id, metrics=[Metric("latency_batch_1_ms", lat, 0, 0)])
        client.set_terminated(r.info.run_id)

    tracking = MlflowTracking.connect(store_uri, legacy_tags)
    ids = tracking.experiment_ids()
    only_the_mean = parse_model(SelectionConfig, {"benchmark": {"statistic": "mean"}}, "test")  # what older code wrote
    (sel,), _ = select_all(tracking.load_benchmarks(ids), tracking.load_trials(ids), only_the_mean)
    assert sel.best.trial_key_hash == TRIAL and sel.best.artifact_run_id == champion_id
    assert sel.best.latency_ms == 4.0
    # with the default registry the same store has nothing to join
    default = MlflowTracking.connect(store_uri, TagsRegistry())
    assert default.load_trials(ids) == [] and default.load_benchmarks(ids) == []


@pytest.mark.parametrize("bad", ["abc' OR '1'='1", "has space", "quote'", "ключ"])
def test_unsafe_keys_are_rejected_before_mlflow_sees_them(tracking: MlflowTracking, bad: str) -> None:
    champion = Champion(run_id="r" * 32, study_key_hash=bad, trial_key_hash=TRIAL, data_fp="d", eval_fp="e")
    with pytest.raises(UnsafeValueError):
        tracking.benchmark_exists(identity_for(champion, "c" * 64), champion)
    with pytest.raises(UnsafeValueError):
        tracking.load_champions(tracking.experiment_ids(), study=bad)
    with pytest.raises(UnsafeValueError):
        _ = identity_for(Champion(bad, STUDY, TRIAL, "d", "e"), "c" * 64).key
