"""Realistic sequence lengths on the local backend: test data in a fixed order, ``padding: longest`` against
``max_length``, texts through a tokenizer.json (given, or stored with the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from podium.backends.torchscript import TorchScriptBackend
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.errors import BackendError
from podium.measurement.measure import run_measurement
from tests.integration.test_local_bench import bench, benchmark_runs, log_model_run
from tests.token_models import BertStyleTagger, traced

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def config(tmp: Path, **benchmarking) -> BenchmarkConfig:
    base = {"iterations": 20, "warmup_iterations": 3, "max_length": 256, "stability": {"max_windows": 2}}
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)  # 64-wide dense layers: time grows with the number of tokens
    return traced(BertStyleTagger(vocab=100, width=64), tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture
def lengths_8_to_128(tmp_path: Path) -> Path:
    data = tmp_path / "tokens.jsonl"
    data.write_text("".join(json.dumps([(i % 97) + 1] * n) + "\n" for i, n in enumerate(range(8, 129))))
    return data


class RecordingBackend(TorchScriptBackend):
    """The local backend, recording the shape of every request it makes, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shapes: list[tuple[int, ...]] = []

    def bind(self, inputs):
        call = super().bind(inputs)
        shape = tuple(next(iter(inputs.values())).shape)

        def recorded() -> object:
            self.shapes.append(shape)
            return call()

        return recorded


def measure(model: Path, cfg: BenchmarkConfig) -> tuple[dict, list[tuple[int, ...]]]:
    backend = RecordingBackend(model, "cpu")
    try:
        measured = run_measurement(backend, cfg, model_file=model)
    finally:
        backend.close()
    return dict(measured.summary), backend.shapes


def test_longest_padding_times_real_lengths_and_is_faster(model: Path, lengths_8_to_128: Path, tmp_path: Path) -> None:
    full, full_shapes = measure(model, config(tmp_path, test_data=str(lengths_8_to_128)))
    longest, longest_shapes = measure(model, config(tmp_path, test_data=str(lengths_8_to_128), padding="longest"))
    assert {s for s in full_shapes} == {(1, 256)}
    assert {s[1] for s in longest_shapes} <= set(range(8, 129)) and len({s[1] for s in longest_shapes}) > 32
    profile, full_profile = longest["batches"]["1"]["lengths"], full["batches"]["1"]["lengths"]
    assert profile["padding"] == "longest" and full_profile["padded_to"] == {
        "min": 256,
        "max": 256,
        "distinct_batches": 64,
    }
    # the same 64 sequences either way: only the padding differs
    for key in ("p50_tokens", "p90_tokens", "max_tokens", "sequences"):
        assert profile[key] == full_profile[key]
    assert profile["padded_to"]["min"] >= 8 and profile["padded_to"]["max"] <= 128
    quartiles = profile["by_length_quartile"]
    assert [q["quartile"] for q in quartiles] == [1, 2, 3, 4]
    assert sum(q["requests"] for q in quartiles) == longest["batches"]["1"]["count"]  # every timed request
    assert quartiles[0]["tokens"][1] <= quartiles[3]["tokens"][0]
    # ~70 tokens on average against 256 for every request: a 3-4x gap, far beyond noise
    assert longest["batches"]["1"]["p50_ms"] < full["batches"]["1"]["p50_ms"]


def test_two_runs_of_one_config_time_identical_request_shapes(
    model: Path, lengths_8_to_128: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, test_data=str(lengths_8_to_128), padding="longest", batch_sizes=[1, 4])
    first, first_shapes = measure(model, cfg)
    second, second_shapes = measure(model, cfg)
    # warm-up and two windows per batch size (max_windows 2: the count never varies), each window whole passes
    # over the planned batches: 64 of one sequence (batch 1), 31 of four (batch 4, 121 sequences)
    assert first_shapes == second_shapes and len(first_shapes) == (3 + 2 * 64) + (3 + 2 * 31)
    assert {s[0] for s in first_shapes} == {1, 4}
    for b in ("1", "4"):
        a, z = first["batches"][b]["lengths"], second["batches"][b]["lengths"]
        assert {k: v for k, v in a.items() if k != "by_length_quartile"} == {
            k: v for k, v in z.items() if k != "by_length_quartile"
        }


def word_level_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def texts(path: Path, counts: list[int]) -> Path:
    lines = [{"text": " ".join(WORDS[j % len(WORDS)] for j in range(n))} for n in counts]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_texts_through_a_tokenizer_json(model: Path, tmp_path: Path) -> None:
    tokenizer = word_level_tokenizer(tmp_path / "tokenizer.json")
    data = texts(tmp_path / "texts.jsonl", [5, 10, 20, 40])
    summary, shapes = measure(model, config(tmp_path, test_data=str(data), tokenizer=str(tokenizer), padding="longest"))
    profile = summary["batches"]["1"]["lengths"]
    assert profile["max_tokens"] == 40 and profile["sequences"] == 4 and profile["padded_to"]["min"] == 5
    assert {s[1] for s in shapes} == {5, 10, 20, 40}


def test_texts_with_the_tokenizer_stored_in_the_model(tmp_path: Path) -> None:
    raw = word_level_tokenizer(tmp_path / "tok.json").read_text()
    model = traced(BertStyleTagger(vocab=100), tmp_path / "with-tokenizer" / "model.pt", extra={"tokenizer.json": raw})
    data = texts(tmp_path / "texts.jsonl", [3, 7])
    _, shapes = measure(model, config(tmp_path, test_data=str(data), padding="longest"))
    assert {s[1] for s in shapes} == {3, 7}
    bare = traced(BertStyleTagger(vocab=100), tmp_path / "bare" / "model.pt")
    with pytest.raises(BackendError, match=r"holds texts but no tokenizer was found: set benchmarking\.tokenizer"):
        measure(bare, config(tmp_path, test_data=str(data)))


def test_bench_command_with_texts_and_longest_padding(store_uri: str, client: MlflowClient, tmp_path: Path) -> None:
    model = traced(BertStyleTagger(vocab=100), tmp_path / "src" / "model.pt")
    tokenizer = word_level_tokenizer(tmp_path / "tokenizer.json")
    data = texts(tmp_path / "texts.jsonl", [4, 9, 16])
    run_id = log_model_run(client, tmp_path, model_file=model)
    args = ["--test-data", str(data), "--tokenizer", str(tokenizer), "--padding", "longest", "--out", "out"]
    out = bench(store_uri, tmp_path, "--run-id", run_id, *args)
    assert out.returncode == 0, out.stderr
    (run,) = benchmark_runs(client)
    assert run.info.status == "FINISHED"
    summary = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert summary["batches"]["4"]["lengths"]["padded_to"] == {"min": 16, "max": 16, "distinct_batches": 1}
    assert summary["batches"]["1"]["lengths"]["padded_to"] == {"min": 4, "max": 16, "distinct_batches": 3}
    assert summary["config"]["benchmarking"]["padding"] == "longest"
    client.log_artifact(run_id, str(tokenizer), "model")  # the tokenizer kept beside the model in its run
    beside = bench(store_uri, tmp_path, "--run-id", run_id, "--test-data", str(data), "--no-log", "--out", "beside")
    assert beside.returncode == 0, beside.stderr
    assert (
        json.loads((tmp_path / "beside" / "benchmark.json").read_text())["batches"]["1"]["lengths"]["max_tokens"] == 16
    )
    assert "batch 1: 3 sequences, tokens p50 9 / p90 14.6 / max 16; padded (longest) to 4-16" in " ".join(
        out.stdout.split()
    )
