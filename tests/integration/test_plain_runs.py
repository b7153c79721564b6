"""Plain MLflow runs, adopted as they are: a training script that imports only mlflow and torch, and an Optuna
study logged by ``optuna_integration.MLflowCallback``, benchmarked by real workers on a real sqlite store and
real redis-server, selected by the configured metric, their figures written back; a run without a model is
refused in one line and never slows the next one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.producers.hooks import BenchmarkHook
from podium.tracking.tracker import MlflowTracking
from tests.cli import podium_in_process
from tests.conftest import REPO
from tests.pipeline_helpers import Pipeline, select_best, wait_published
from tests.servers import wait_until

pytestmark = [pytest.mark.server, pytest.mark.timeout(600)]

TRAINING = REPO / "tests" / "plain_training.py"
EXAMPLE = REPO / "examples" / "plain_mlflow_study.py"
SMALL_BENCHMARK = (
    "benchmarking:\n  iterations: 20\n  warmup_iterations: 2\n  max_length: 16\n  stability:\n    max_windows: 3\n"
)
#: Rank by the metric these runs log; results of a busy test host compete (they are marked, not hidden).
SELECTION = "objective:\n  metric: val_f1\nselection:\n  include_unstable: true\n"


def config_dir(tmp: Path) -> Path:
    folder = tmp / "config"
    folder.mkdir(exist_ok=True)
    (folder / "benchmark.yaml").write_text(SMALL_BENCHMARK)
    (folder / "best_model_selection.yaml").write_text(SELECTION)
    return folder


def train(store: str, cwd: Path, experiment: str, *extra: str) -> dict[str, list[str]]:
    """Run the plain training script; its run ids by kind (``model``, ``nomodel``)."""
    cwd.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, str(TRAINING), store, experiment, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        kind, _, run_id = line.partition(" ")
        runs.setdefault(kind, []).append(run_id)
    return runs


def podium(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess:
    return podium_in_process(*args, env=pipeline.env)


def finished_benchmarks(store: str) -> list:
    client = MlflowClient(store)
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`code.stage` = 'benchmark' AND attributes.status = 'FINISHED'",
    )


def user_view(store: str, run_id: str) -> tuple[dict, dict]:
    """The run's params and metrics, podium's write-back (``podium.*``) left out."""
    run = MlflowClient(store).get_run(run_id)
    return dict(run.data.params), {k: v for k, v in run.data.metrics.items() if not k.startswith("podium.")}


def test_plain_runs_are_measured_selected_and_written_back(tmp_path: Path, sqlite_store_uri: str) -> None:
    store = sqlite_store_uri
    pipeline = Pipeline(tmp_path / "pipeline", store, config_dir=str(config_dir(tmp_path)))
    try:
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
        pipeline.start("aggregator", "aggregator")
        runs = train(store, tmp_path / "training", "bert-tagger", "--runs", "3", "--no-model-run")
        good, (bad,) = runs["model"], runs["nomodel"]
        before = {r: user_view(store, r) for r in good}
        pipeline.wait_workers(1)

        missing = podium(pipeline, "backfill", "--dry-run")  # backfill finds plain runs, refuses the one without
        assert missing.returncode == 0 and "3 of 3 champions have no benchmark" in missing.stdout, missing.stderr
        refused = podium(pipeline, "enqueue", "--run-id", bad)
        assert refused.returncode == 2
        line = refused.stderr.strip()
        assert len(line.splitlines()) == 1 and "has no model" in line and "model.artifact_path" in line
        assert "DESIGN.md" not in line
        for run_id in good:
            sent = podium(pipeline, "enqueue", "--run-id", run_id)
            assert sent.returncode == 0, sent.stderr
        assert wait_until(lambda: len(finished_benchmarks(store)) == 3, 150), pipeline.processes["worker"].log()[-5000:]

        benchmarks = finished_benchmarks(store)
        assert "0 of 3 champions have no benchmark" in podium(pipeline, "backfill", "--dry-run").stdout
        assert {b.data.tags["code.benchmark.champion_run_id"] for b in benchmarks} == set(good)
        assert all("traced to TorchScript" in b.data.tags["code.benchmark.conversion"] for b in benchmarks)
        assert len({b.data.tags["code.grouping.study_key_hash"] for b in benchmarks}) == 1  # one experiment
        study = benchmarks[0].data.tags["code.grouping.study_key_hash"]

        best = select_best(store, pipeline.env, study)
        assert best["best"]["trial_run_id"] == good[-1]  # the highest val_f1 (0.80)
        assert best["best"]["f1_score"] == pytest.approx(0.80)
        assert best["study_label"] == "bert-tagger"
        assert best["best"]["params"]["backbone"] == "tagger-24"
        assert best["best"]["metrics"]["val_f1"] == pytest.approx(0.80)

        for run_id in good:  # the user's params and metrics unchanged; the latency beside them
            assert user_view(store, run_id) == before[run_id]
            run = MlflowClient(store).get_run(run_id)
            assert "podium.latency_batch_1_p50_ms" in run.data.metrics
            assert "podium.latency_batch_1_p99_ms" in run.data.metrics
            assert run.data.tags["podium.benchmark_run_id"] in {b.info.run_id for b in benchmarks}

        published = wait_published(pipeline.redis, study, best["benchmark_config_hash"], best["best"], timeout=120)
        assert published is not None and published.best.trial_run_id == good[-1]
        assert published.label is not None and published.label.startswith("bert-tagger")
    finally:
        pipeline.stop()


def test_a_refused_run_never_slows_the_next_one(tmp_path: Path, sqlite_store_uri: str) -> None:
    """The hook refuses a run without a model in one line, and sends the next good run at once (no back-off
    as for a broker outage)."""
    store = sqlite_store_uri
    pipeline = Pipeline(tmp_path / "pipeline", store, config_dir=str(config_dir(tmp_path)))
    try:
        runs = train(store, tmp_path / "training", "bert-tagger", "--runs", "1", "--no-model-run")
        config = parse_model(BenchmarkConfig, {"benchmarking": {"iterations": 5}}, "test")
        tracking = MlflowTracking.from_settings(pipeline.settings, "val_f1", tracking_uri=store)
        hook = BenchmarkHook(pipeline.app, config, tracking=tracking, objective_metric="val_f1")
        assert hook(runs["nomodel"][0]) is None
        sent = hook(runs["model"][0])
        assert sent is not None and hook.missed == []
        assert len(hook.refused) == 1 and "has no model" in hook.refused[0].reason
        hook.close()
    finally:
        pipeline.stop()


def test_optuna_mlflow_callback_and_podiums_hook_in_one_study(tmp_path: Path, sqlite_store_uri: str) -> None:
    store = sqlite_store_uri
    pipeline = Pipeline(tmp_path / "pipeline", store, config_dir=str(config_dir(tmp_path)))
    try:
        pipeline.start("worker", "worker", "--target", "cpu", "--loglevel", "WARNING")
        pipeline.start("aggregator", "aggregator")
        pipeline.wait_workers(1)
        env = pipeline.env | {"MLFLOW_TRACKING_URI": store}
        out = subprocess.run(
            [sys.executable, str(EXAMPLE), "--trials", "3", "--study-name", "tagger-study"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "3 benchmark request(s) sent, 0 missed, 0 refused" in out.stdout, out.stderr[-3000:]
        assert wait_until(lambda: len(finished_benchmarks(store)) == 3, 150), pipeline.processes["worker"].log()[-5000:]
        client = MlflowClient(store)
        trial_runs = client.search_runs([client.get_experiment_by_name("tagger-study").experiment_id])
        assert len(trial_runs) == 3 and all("val_f1" in r.data.metrics for r in trial_runs)
        study = finished_benchmarks(store)[0].data.tags["code.grouping.study_key_hash"]
        best = select_best(store, pipeline.env, study)
        top = max(trial_runs, key=lambda r: (r.data.metrics["val_f1"], r.info.run_id))
        assert best["best"]["f1_score"] == pytest.approx(top.data.metrics["val_f1"])
        assert best["study_label"] == "tagger-study"
    finally:
        pipeline.stop()


def test_a_plain_runs_identity_is_stable_and_explained(tmp_path: Path, sqlite_store_uri: str) -> None:
    """The same plain run gives the same benchmark_key on every enqueue (nothing random in its identity); its
    parts come from what the run has: its id (no dataset logged) and its params."""
    from podium.core.tags import TagsRegistry
    from podium.producers.enqueue import build_request
    from podium.tracking.plain_runs import adopt

    store = sqlite_store_uri
    runs = train(store, tmp_path / "training", "bert-tagger", "--runs", "1")
    (run_id,) = runs["model"]
    tracking = MlflowTracking.connect(store, TagsRegistry(), objective_metric="val_f1")
    first, again = adopt(tracking, run_id), adopt(tracking, run_id)
    assert first == again and first.plain and first.artifact_path.startswith("models:/m-")
    assert first.champion.trial_key_hash == run_id and first.champion.data_fp == f"run:{run_id}"
    assert first.champion.eval_fp.startswith("params:")
    keys = {
        build_request(a.champion, BenchmarkConfig(), artifact_path=a.artifact_path).benchmark_key
        for a in (first, again)
    }
    assert len(keys) == 1
    assert json.loads(json.dumps(first.champion.as_dict()))["run_id"] == run_id


def test_the_model_is_found_where_mlflow_users_put_it(tmp_path: Path, sqlite_store_uri: str) -> None:
    """A TorchScript file in a child (refit) run makes the child the champion of its parent trial; a file under
    a name podium does not guess is found through model.artifact_path, and refused in one line without it."""
    from podium.core.tags import TagsRegistry
    from podium.demo.model import TinyTagger, export
    from podium.errors import RunRefused
    from podium.tracking.plain_runs import adopt

    client = MlflowClient(sqlite_store_uri)
    exp = client.create_experiment("ner", (tmp_path / "artifacts").as_uri())
    model = export(TinyTagger(8, 1), tmp_path / "m" / "model.pt")
    parent = client.create_run(exp).info.run_id
    client.log_metric(parent, "val_f1", 0.9)
    client.log_param(parent, "backbone", "tiny")
    child = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    client.log_artifact(child, str(model), "model")
    odd = client.create_run(exp).info.run_id
    client.log_metric(odd, "val_f1", 0.5)
    renamed = tmp_path / "w" / "tagger.ts"
    renamed.parent.mkdir()
    renamed.write_bytes(model.read_bytes())
    client.log_artifact(odd, str(renamed), "weights")
    for run_id in (child, parent, odd):
        client.set_terminated(run_id)
    tracking = MlflowTracking.connect(sqlite_store_uri, TagsRegistry(), objective_metric="val_f1")

    adopted = adopt(tracking, parent)
    assert (adopted.champion.run_id, adopted.champion.trial_key_hash) == (child, parent)
    assert adopted.artifact_path == "model/model.pt" and adopted.label == "ner"
    with pytest.raises(RunRefused, match=r"has no model to benchmark.*model\.artifact_path") as refused:
        adopt(tracking, odd)
    assert "\n" not in str(refused.value)
    assert adopt(tracking, odd, artifact_path="weights/tagger.ts").artifact_path == "weights/tagger.ts"
    with pytest.raises(RunRefused, match=r"no metric 'macro-f1'.*val_f1.*objective\.metric"):
        adopt(tracking, parent, objective_metric="macro-f1")


def test_podium_bench_measures_a_plain_run_now(tmp_path: Path, sqlite_store_uri: str) -> None:
    store = sqlite_store_uri
    (run_id,) = train(store, tmp_path / "training", "bert-tagger", "--runs", "1")["model"]
    env = {"PODIUM_TRACKING_URI": store, "PODIUM_CONFIG_DIR": str(config_dir(tmp_path))}
    out = podium_in_process("bench", "--run-id", run_id, "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert summary["model_conversion"].startswith("eager nn.Module") and any("traced" in n for n in summary["notes"])
    (bench,) = finished_benchmarks(store)
    assert bench.data.tags["code.benchmark.champion_run_id"] == run_id
    assert MlflowClient(store).get_run(run_id).data.tags["podium.benchmark_run_id"] == bench.info.run_id
