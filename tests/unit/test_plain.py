"""Plain MLflow runs read as trials (pure rules), the headline written back, and an eager module made a file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from podium.core.config import BenchmarkingSection
from podium.core.headline import headline
from podium.core.plain import (
    PlainRun,
    fingerprints,
    is_podium_run,
    objective_problem,
    plain_champion,
    plain_study_hash,
    plain_trial_records,
    study_label,
)
from podium.core.tags import TagsRegistry
from podium.errors import ConversionError
from podium.measurement.mlflow_models import convert

TAGS = TagsRegistry()


def run(run_id: str = "a" * 32, **fields) -> PlainRun:
    base = {
        "run_id": run_id,
        "experiment_id": "3",
        "experiment_name": "bert-tagger",
        "status": "FINISHED",
        "start_time": 1,
        "params": {"backbone": "bert-base", "lr": "0.01"},
        "metrics": {"val_f1": 0.8, "loss": 0.3},
    }
    return PlainRun(**(base | fields))


def test_a_plain_runs_study_is_its_study_tag_else_its_experiment() -> None:
    assert study_label(run()) == "bert-tagger"
    assert study_label(run(tags={"study": "ner-v2"})) == "ner-v2"
    assert plain_study_hash("bert-tagger") != plain_study_hash("ner-v2")
    assert not is_podium_run(run().tags, TAGS)
    assert is_podium_run({"code.stage": "hpo_trial"}, TAGS)


def test_fingerprints_come_from_what_the_run_has_and_are_stable() -> None:
    bare = run()
    assert fingerprints(bare, TAGS) == fingerprints(bare, TAGS)
    data, evaluation = fingerprints(bare, TAGS)
    assert data == f"run:{bare.run_id}" and evaluation.startswith("params:")
    with_sets = run(datasets=(("train", "d1", "training"), ("val", "d2", "eval")))
    data2, eval2 = fingerprints(with_sets, TAGS)
    assert data2.startswith("datasets:") and eval2.startswith("datasets:") and data2 != eval2
    other = run(datasets=(("train", "d9", "training"), ("val", "d2", "eval")))
    assert fingerprints(other, TAGS)[0] != data2 and fingerprints(other, TAGS)[1] == eval2  # new data, same eval
    tagged = run(tags={"code.fingerprint.data": "sha256:x"})
    assert fingerprints(tagged, TAGS)[0] == "sha256:x"


def test_a_child_run_holding_the_model_is_the_champion_of_its_parent_trial() -> None:
    parent, child = run("p" * 32), run("c" * 32, metrics={}, tags={"mlflow.parentRunId": "p" * 32}, start_time=5)
    champion = plain_champion(parent, child, TAGS)
    assert (champion.run_id, champion.trial_key_hash) == (child.run_id, parent.run_id)
    records = plain_trial_records(parent, child, "val_f1", TAGS)
    assert [(r.kind, r.run_id, r.objective) for r in records] == [
        ("trial", parent.run_id, 0.8),
        ("refit", child.run_id, None),
    ]
    assert {r.study_key_hash for r in records} == {champion.study_key_hash}


def test_a_missing_objective_metric_lists_the_metrics_the_run_has() -> None:
    assert objective_problem(run(), "val_f1") is None
    problem = objective_problem(run(), "macro-f1")
    assert "no metric 'macro-f1'" in problem and "loss, val_f1" in problem and "objective.metric" in problem
    assert "\n" not in problem and "DESIGN" not in problem


def test_the_headline_is_p50_and_p99_per_batch_under_the_prefix() -> None:
    metrics = {"latency_batch_1_p50_ms": 1.0, "latency_batch_1_p99_ms": 2.0, "latency_batch_8_p50_ms": 3.0}
    figures, tags = headline(
        metrics, [1, 8], benchmark_run_id="r", benchmark_key="k", stability="b1:stable", backend="local"
    )
    assert figures == {
        "podium.latency_batch_1_p50_ms": 1.0,
        "podium.latency_batch_1_p99_ms": 2.0,
        "podium.latency_batch_8_p50_ms": 3.0,
    }
    assert tags["podium.benchmark_run_id"] == "r" and tags["podium.stability"] == "b1:stable"


def test_a_failed_write_back_is_a_warning_never_an_error(
    sqlite_store_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    from podium.tracking.tracker import MlflowTracking
    from podium.tracking.write_back import write_back

    tracking = MlflowTracking.connect(sqlite_store_uri, TAGS)
    exp = MlflowClient(sqlite_store_uri).create_experiment("t")
    live = MlflowClient(sqlite_store_uri).create_run(exp).info.run_id
    with caplog.at_level(logging.WARNING, logger="podium.tracking.write_back"):
        done = write_back(
            tracking,
            [live, "f" * 32],  # the second run does not exist
            {"latency_batch_1_p50_ms": 1.5},
            [1],
            benchmark_run_id="b" * 32,
            benchmark_key="k",
            stability="",
            backend="local",
        )
    assert done is False and "f" * 32 in caplog.text and "PODIUM_WRITE_BACK" in caplog.text
    assert MlflowClient(sqlite_store_uri).get_run(live).data.metrics == {"podium.latency_batch_1_p50_ms": 1.5}


class Tagger(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(30, 4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        return self.out(self.embed(input_ids) * attention_mask.unsqueeze(-1))


def test_an_eager_module_is_traced_for_torchscript_with_its_signature(tmp_path: Path) -> None:
    from podium.backends.torchscript import TorchScriptBackend

    path, note = convert(Tagger(), BenchmarkingSection(max_length=8), tmp_path)
    assert "traced to TorchScript" in note and "input_ids INT64" in note
    backend = TorchScriptBackend(path, device="cpu")
    specs = backend.prepare()
    assert [(s.name, s.vocab_size) for s in specs] == [("input_ids", 30), ("attention_mask", None)]
    backend.close()


def test_an_eager_module_is_exported_for_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    path, note = convert(Tagger(), BenchmarkingSection(max_length=8, model_format="onnx"), tmp_path)
    assert path.suffix == ".onnx" and "exported to ONNX" in note
    from podium.backends.onnx import OnnxBackend

    backend = OnnxBackend(path, device="cpu")
    assert [s.name for s in backend.prepare()] == ["input_ids", "attention_mask"]  # loadable, dynamic dims
    backend.close()


def test_a_module_whose_inputs_cannot_be_told_is_refused_with_the_config_that_fixes_it(tmp_path: Path) -> None:
    class Odd(torch.nn.Module):
        def forward(self, features):
            return features * 2

    with pytest.raises(ConversionError, match=r"benchmarking\.inputs"):
        convert(Odd(), BenchmarkingSection(), tmp_path)


def test_podium_watch_shows_a_scopes_label_next_to_its_hash() -> None:
    from rich.console import Console

    from podium.cli.watch_cmd import render
    from podium.core.messages import BestModelUpdate

    update = BestModelUpdate(
        study_key_hash="a" * 64,
        benchmark_config_hash="c" * 64,
        seq=1,
        reason="first",
        best=None,
        candidates=0,
        policy="constraint",
        aggregation="median",
        published_at=0.0,
        label="bert-tagger · local · torchscript · batch 1",
    )
    console = Console(width=400, record=True)
    console.print(render({(update.study_key_hash, update.benchmark_config_hash): update}))
    text = console.export_text()
    assert "bert-tagger · local · torchscript · batch 1" in text and "aaaaaaaaaa" in text
    assert BestModelUpdate.model_validate_json(update.encode()).label == update.label
