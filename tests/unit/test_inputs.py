"""Inputs from a signature: test data or deterministic synthetic data; clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from podium.backends.base import InputSpec
from podium.backends.inputs import build_inputs
from podium.backends.triton_deploy import PYTHON_MODEL, model_config, model_files, to_pbtxt
from podium.errors import BackendError
from podium.measurement.input_data import load_token_rows

IDS = InputSpec("input_ids", "INT64", (-1, -1), vocab_size=50)


def test_synthetic_inputs_are_deterministic_and_in_vocab() -> None:
    a = build_inputs([IDS, InputSpec("attention_mask", "INT64", (-1, -1))], 4, 16, seed=3)
    b = build_inputs([IDS, InputSpec("attention_mask", "INT64", (-1, -1))], 4, 16, seed=3)
    assert a["input_ids"].shape == (4, 16) and a["input_ids"].dtype == np.int64
    assert np.array_equal(a["input_ids"], b["input_ids"])
    assert a["input_ids"].min() >= 1 and a["input_ids"].max() < 50
    assert (a["attention_mask"] == 1).all()


def test_test_data_fills_rows_truncated_and_padded(tmp_path: Path) -> None:
    data = tmp_path / "tokens.jsonl"
    data.write_text('[5, 6, 7]\n{"input_ids": [9, 9, 9, 9, 9, 9]}\n\n')
    rows = load_token_rows(data)
    x = build_inputs([IDS], 3, 4, rows)["input_ids"]
    assert x.tolist() == [[5, 6, 7, 0], [9, 9, 9, 9], [5, 6, 7, 0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]\nnot json\n", "line 2: not JSON"),
        ('{"ids": [1]}\n', "line 1: expected a non-empty list"),
        ("[-1]\n", "line 1"),
        ("\n", "no token sequences"),
    ],
)
def test_bad_test_data(tmp_path: Path, text: str, message: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(text)
    with pytest.raises(BackendError, match=message):
        load_token_rows(data)


def test_unfillable_signatures() -> None:
    with pytest.raises(BackendError, match="datatype BYTES, which podium cannot fill"):
        build_inputs([InputSpec("text", "BYTES", (-1,))], 1, 8)
    with pytest.raises(BackendError, match="is a scalar"):
        build_inputs([InputSpec("x", "FP32", ())], 1, 8)


def test_fixed_and_float_dims() -> None:
    x = build_inputs([InputSpec("pixels", "FP32", (-1, 3, 8, 8))], 2, 99)["pixels"]
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32


def test_triton_config_for_a_libtorch_deploy() -> None:
    cfg = model_config("tagger", "libtorch", [IDS], [InputSpec("logits", "FP32", (-1, -1, 5))], 16)
    assert cfg["platform"] == "pytorch_libtorch" and cfg["max_batch_size"] == 16
    assert cfg["input"] == [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]}]
    assert cfg["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [-1, 5]}]
    assert cfg["instance_group"] == [{"kind": "KIND_AUTO", "count": 1}] and "dynamic_batching" not in cfg
    text = to_pbtxt(cfg)
    assert 'name: "tagger"' in text and "data_type: TYPE_INT64 dims: [ -1 ]" in text
    assert 'platform: "pytorch_libtorch"' in text
    assert model_files("libtorch", b"pt") == {"file:1/model.pt": b"pt"}


def test_triton_config_for_a_python_deploy() -> None:
    cfg = model_config("t", "python", [IDS], [InputSpec("logits", "FP32", (-1, -1, 5))], 4, 2, True)
    assert cfg["backend"] == "python" and "platform" not in cfg
    assert cfg["instance_group"] == [{"kind": "KIND_AUTO", "count": 2}] and cfg["dynamic_batching"] == {}
    assert 'backend: "python"' in to_pbtxt(cfg) and "dynamic_batching { }" in to_pbtxt(cfg)
    files = model_files("python", b"pt")
    assert files == {"file:1/model.pt": b"pt", "file:1/model.py": PYTHON_MODEL.encode()}
    compile(PYTHON_MODEL, "model.py", "exec")  # the generated model is valid Python
    assert "from_dlpack" in PYTHON_MODEL and "as_numpy" not in PYTHON_MODEL


def test_a_deploy_needs_outputs_and_a_known_format() -> None:
    with pytest.raises(BackendError, match="needs the model's outputs"):
        model_config("t", "python", [IDS], [], 4)
    with pytest.raises(BackendError, match="deploy 'tensorrt'"):
        model_config("t", "tensorrt", [IDS], [IDS], 4)
    onnx = model_config("t", "onnx", [IDS], [IDS], 4)
    assert onnx["platform"] == "onnxruntime_onnx" and model_files("onnx", b"g") == {"file:1/model.onnx": b"g"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["input_ids"], [("input_ids", 100)]),
        (["input_ids", "attention_mask"], [("input_ids", 100), ("attention_mask", None)]),
        (
            ["input_ids", "token_type_ids", "attention_mask"],
            [("input_ids", 100), ("token_type_ids", None), ("attention_mask", None)],
        ),
        (["tokens"], [("tokens", 100)]),
        (["x"], [("x", 100)]),
        (["input_ids", "pixel_values"], None),
        (["a", "b"], None),
        ([], None),
    ],
)
def test_inputs_by_convention(args: list[str], expected) -> None:
    from podium.backends.torchscript import conventional_inputs, inputs_snippet

    specs = conventional_inputs(args, 100)
    if expected is None:
        assert specs is None
        snippet = inputs_snippet(args)
        assert snippet.startswith("benchmarking:\n  inputs:") and all(f"name: {a}," in snippet for a in args)
        return
    assert [(s.name, s.vocab_size) for s in specs] == expected
    assert all((s.datatype, s.shape) == ("INT64", (-1, -1)) for s in specs)


def test_an_onnx_deploy_carries_its_external_weights_by_name() -> None:
    files = model_files("onnx", b"graph", beside={"tagger.onnx.data": b"weights"})
    assert files == {"file:1/model.onnx": b"graph", "file:1/tagger.onnx.data": b"weights"}


def test_a_fixed_batch_dimension_is_never_sent_as_another_batch_size() -> None:
    fixed = InputSpec("input_ids", "INT64", (1, -1))
    assert build_inputs([fixed], 1, 8)["input_ids"].shape == (1, 8)
    with pytest.raises(BackendError, match=r"fixed first \(batch\) dimension of 1, so a batch of 8 cannot be sent"):
        build_inputs([fixed], 8, 8)


def test_the_reason_of_an_error_is_its_cause_cut_at_a_word() -> None:
    from podium.backends.base import reason_of

    torchscript = RuntimeError(
        "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent "
        "call last):\n  File 'code/x.py', line 3\n    return torch.embedding(weight, ids)\n\nRuntimeError: index out of range in self\n"
    )
    assert reason_of(torchscript) == "RuntimeError: index out of range in self"
    assert reason_of(ValueError("first line\nsecond line")) == "first line"
    long = reason_of(ValueError("word " * 100), limit=23)
    assert long == "word word word word …"
    assert reason_of(ValueError("")) == "ValueError"
