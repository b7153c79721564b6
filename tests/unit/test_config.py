"""Config files: the shipped ones equal the defaults; a bad file gives one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.core.config import BenchmarkConfig, BenchmarkingSection, SelectionConfig
from podium.core.tags import TagsRegistry
from podium.core.validation import parse_model
from podium.errors import ConfigError
from podium.settings.files import input_fingerprint, load_benchmark_config, load_selection_config, load_tags
from tests.conftest import REPO


def test_shipped_files_equal_builtin_defaults() -> None:
    assert load_benchmark_config(REPO / "config/benchmark.yaml") == BenchmarkConfig()
    assert load_selection_config(REPO / "config/best_model_selection.yaml") == SelectionConfig()
    assert load_tags(REPO / "config/tags.yaml") == TagsRegistry()


def test_missing_config_dir_means_defaults(tmp_path: Path) -> None:
    assert load_selection_config(None, tmp_path) == SelectionConfig()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "benchmark:\n  latency_aggregation: best\n",
            r"cfg.yaml: benchmark.latency_aggregation: .*'latest', 'median' or 'mean', got 'best'",
        ),
        (
            "selection:\n  policy: fastest\n",
            r"selection.policy: .*'constraint', 'tolerance', 'weighted' or 'throughput_at_sla', got 'fastest'",
        ),
        ("scoring:\n  f1_weight: -1\n", r"scoring.f1_weight: .*greater than or equal to 0, got -1"),
        ("scoring:\n  f1_weight: 0\n  latency_weight: 0\n", r"cannot both be 0"),
        (
            "benchmark:\n  windw: 3\n",
            r"benchmark.windw: unknown key; allowed keys here: across_runs, batch_size, latency_metric, required_metrics, "
            r"statistic, window",
        ),
        ("- a\n- b\n", r"expected a mapping of keys at the top level, got list"),
        ("benchmark: [\n", r"not valid YAML \(line"),
    ],
)
def test_bad_selection_file(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_selection_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "benchmarking:\n  batch_sizes: [0, 8]\n",
            r"benchmarking.batch_sizes: must be a non-empty list of positive integers, got \[0, 8\]",
        ),
        ("run:\n  mode: sometimes\n", r"run.mode: .*'reuse_if_exists' or 'force_new', got 'sometimes'"),
        ("benchmarking:\n  device: tpu\n", r"benchmarking.device: .*'cpu' or 'cuda', got 'tpu'"),
        ('benchmarking:\n  target: "gpu h200"\n', r"benchmarking.target: may only hold letters"),
        ("benchmarking:\n  iterations: 0\n", r"benchmarking.iterations: .*greater than 0, got 0"),
    ],
)
def test_bad_benchmark_file(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_benchmark_config(_write(tmp_path, text))


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_benchmark_config(tmp_path / "nope.yaml")


def test_unsafe_tag_name_in_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"grouping.study_key_hash: may only hold"):
        load_tags(_write(tmp_path, 'grouping:\n  study_key_hash: "a`b"\n'))


def test_test_data_fingerprint_follows_content(tmp_path: Path) -> None:
    data = tmp_path / "tokens.jsonl"
    data.write_text("[1, 2, 3]\n")
    a = input_fingerprint(BenchmarkingSection(test_data=data))
    data.write_text("[1, 2, 4]\n")
    assert input_fingerprint(BenchmarkingSection(test_data=data)) != a
    with pytest.raises(ConfigError, match="cannot read"):
        input_fingerprint(BenchmarkingSection(test_data=tmp_path / "missing.jsonl"))


def test_overrides_are_validated() -> None:
    cfg = BenchmarkConfig().with_overrides(backend="triton", batch_sizes=[8, 1])
    assert cfg.benchmarking.backend == "triton" and cfg.benchmarking.batch_sizes == [1, 8]
    with pytest.raises(ConfigError, match=r"command-line option benchmarking: backend: .*got 'onnx'"):
        BenchmarkConfig().with_overrides(backend="onnx")


@pytest.mark.parametrize("name", ["../../tmp/x.json", "runs/benchmark.json", "..", "a\\b.json", ""])
def test_the_summarys_artifact_name_is_a_plain_file_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"output\.filename"):
        parse_model(BenchmarkConfig, {"output": {"filename": name}}, "request")
    assert (
        parse_model(BenchmarkConfig, {"output": {"filename": "latency 1.json"}}, "r").output.filename
        == "latency 1.json"
    )


def test_declared_inputs_enter_the_hash_only_when_declared() -> None:
    from podium.core.identity import benchmark_config_hash, measurement_settings

    plain = BenchmarkConfig().benchmarking
    assert "inputs" not in measurement_settings(plain, "fp")  # hashes of existing configs are unchanged
    declared = BenchmarkConfig().with_overrides(inputs=[{"name": "a", "datatype": "FP32", "shape": [-1, -1]}])
    assert benchmark_config_hash(declared.benchmarking, "fp") != benchmark_config_hash(plain, "fp")
    with pytest.raises(ConfigError, match="dimensions are -1"):
        BenchmarkConfig().with_overrides(inputs=[{"name": "a", "datatype": "FP32", "shape": [0]}])
    with pytest.raises(ConfigError, match="datatype"):
        BenchmarkConfig().with_overrides(inputs=[{"name": "a", "datatype": "COMPLEX", "shape": [-1]}])


def test_padding_enters_the_hash_only_when_longest_and_the_tokenizer_the_fingerprint(tmp_path: Path) -> None:
    from podium.core.identity import benchmark_config_hash, measurement_settings

    plain = BenchmarkConfig().benchmarking
    assert "padding" not in measurement_settings(plain, "fp")  # hashes of existing configs are unchanged
    longest = BenchmarkConfig().with_overrides(padding="longest").benchmarking
    assert benchmark_config_hash(longest, "fp") != benchmark_config_hash(plain, "fp")
    with pytest.raises(ConfigError, match="padding"):
        BenchmarkConfig().with_overrides(padding="shortest")
    data, tokenizer = tmp_path / "texts.jsonl", tmp_path / "tokenizer.json"
    data.write_text('"a text"\n')
    tokenizer.write_text("{}")
    bare = input_fingerprint(BenchmarkingSection(test_data=data))
    with_tokenizer = input_fingerprint(BenchmarkingSection(test_data=data, tokenizer=tokenizer))
    tokenizer.write_text('{"changed": 1}')
    assert len({bare, with_tokenizer, input_fingerprint(BenchmarkingSection(test_data=data, tokenizer=tokenizer))}) == 3
    with pytest.raises(ConfigError, match=r"benchmarking\.tokenizer: cannot read"):
        input_fingerprint(BenchmarkingSection(test_data=data, tokenizer=tmp_path / "missing.json"))


def test_the_model_format_enters_the_hash_only_when_onnx() -> None:
    from podium.core.identity import benchmark_config_hash, measurement_settings

    plain = BenchmarkConfig().benchmarking
    assert "model_format" not in measurement_settings(plain, "fp")  # hashes of existing configs are unchanged
    onnx = BenchmarkConfig().with_overrides(model_format="onnx").benchmarking
    assert benchmark_config_hash(onnx, "fp") != benchmark_config_hash(plain, "fp")


def test_a_request_for_a_onnx_artifact_is_keyed_and_measured_as_onnx() -> None:
    from podium.core.records import Champion
    from podium.producers.enqueue import build_request

    champion = Champion("r" * 32, "s" * 64, "t" * 64, "d", "e")
    plain = build_request(champion, BenchmarkConfig())
    onnx = build_request(champion, BenchmarkConfig(), artifact_path="model/tagger.onnx")
    assert plain.artifact_path == "model/model.pt" and plain.config.benchmarking.model_format == "torchscript"
    assert onnx.config.benchmarking.model_format == "onnx" and onnx.benchmark_key != plain.benchmark_key
    by_config = build_request(champion, BenchmarkConfig().with_overrides(model_format="onnx"))
    assert by_config.artifact_path == "model/model.onnx" and by_config.benchmark_key == onnx.benchmark_key
