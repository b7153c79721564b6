"""Outputs of a model that declares none, learned by a dry run for a Triton deploy (podium.backends.outputs):
the pure derivation over hand-made observations, and the dry run over real TorchScript models."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from podium.backends.base import InputSpec
from podium.backends.factory import make_backend
from podium.backends.outputs import (
    Observed,
    Point,
    Probe,
    datatype_of,
    describe,
    dry_run,
    merge,
    observe,
    probe_points,
)
from podium.backends.triton import deployment
from podium.backends.triton_deploy import to_pbtxt
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.errors import BackendError
from podium.training import save_torchscript
from tests.token_models import BertStyleTagger, traced

IDS = InputSpec("input_ids", "INT64", (-1, -1))


def probe(batch: int, width: int, *outputs: tuple[str | None, str, tuple[int, ...]]) -> Probe:
    return Probe(batch, width, tuple(Observed(*o) for o in outputs))


# ------------------------------------------------------------------ pure derivation


def test_dims_that_follow_the_batch_or_the_sequence_are_dynamic() -> None:
    probes = [
        probe(1, 16, ("logits", "FP32", (1, 16, 5)), (None, "FP32", (1, 32))),
        probe(4, 16, ("logits", "FP32", (4, 16, 5)), (None, "FP32", (4, 32))),
        probe(1, 8, ("logits", "FP32", (1, 8, 5)), (None, "FP32", (1, 32))),
    ]
    assert merge(probes) == [InputSpec("logits", "FP32", (-1, -1, 5)), InputSpec("OUTPUT__1", "FP32", (-1, 32))]
    # a dim that follows both (batch x sequence flattened) is dynamic too; one run only: the batch alone is
    flat = [probe(1, 16, (None, "INT64", (1, 16 * 3))), probe(2, 16, (None, "INT64", (2, 32 * 3)))]
    assert merge(flat) == [InputSpec("OUTPUT__0", "INT64", (-1, -1))]
    assert merge(flat[:1]) == [InputSpec("OUTPUT__0", "INT64", (-1, 48))]


def test_unnamed_outputs_are_named_by_position_as_libtorch_expects() -> None:
    probes = [probe(2, 4, *[(None, t, (2,)) for t in ("FP32", "INT64", "BOOL")])]
    assert [(o.name, o.datatype) for o in merge(probes)] == [
        ("OUTPUT__0", "FP32"),
        ("OUTPUT__1", "INT64"),
        ("OUTPUT__2", "BOOL"),
    ]


@pytest.mark.parametrize(
    ("second", "says"),
    [
        (probe(2, 16, ("a", "FP32", (2, 5)), ("b", "FP32", (2, 5))), "outputs change with its input shape"),
        (probe(2, 16, ("a", "FP16", (2, 5))), "outputs change with its input shape"),
        (probe(2, 16, ("a", "FP32", (2, 5, 1))), "outputs change with its input shape"),
        (probe(2, 16, ("a", "FP32", (5, 2))), "'a' has shape [5, 2] for a batch of 2: its first dimension is not"),
    ],
)
def test_outputs_one_config_cannot_describe_are_refused(second: Probe, says: str) -> None:
    with pytest.raises(BackendError, match=_escaped(says)) as refused:
        merge([probe(1, 16, ("a", "FP32", (1, 5))), second])
    assert "\n" not in str(refused.value)
    assert ("return the batch first" if "dimension is not" in says else "outputs=[...]") in str(refused.value)


def test_a_scalar_output_is_refused() -> None:
    with pytest.raises(BackendError, match=r"'OUTPUT__0' has shape \[\] for a batch of 1"):
        merge([probe(1, 16, (None, "FP32", ()))])


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (torch.float32, "FP32"),
        (torch.float16, "FP16"),
        (torch.bfloat16, "BF16"),
        (torch.float64, "FP64"),
        (torch.int64, "INT64"),
        (torch.int32, "INT32"),
        (torch.int16, "INT16"),
        (torch.int8, "INT8"),
        (torch.uint8, "UINT8"),
        (torch.bool, "BOOL"),
        (np.dtype("float32"), "FP32"),
        (np.dtype("int64"), "INT64"),
        (np.dtype("bool"), "BOOL"),
    ],
)
def test_datatypes(dtype, datatype: str) -> None:
    assert datatype_of(dtype) == datatype


def test_a_datatype_triton_cannot_describe_is_named() -> None:
    with pytest.raises(BackendError, match="dtype complex64, which Triton cannot describe"):
        datatype_of(torch.complex64)


def test_probe_points_vary_batch_and_width_one_at_a_time() -> None:
    assert probe_points([8, 1, 4], 16, [IDS]) == [Point(1, 16, True), Point(4, 16, True), Point(1, 8, False)]
    assert probe_points([4], 16, [IDS]) == [Point(4, 16, True), Point(5, 16, False), Point(4, 8, False)]
    images = [InputSpec("pixels", "FP32", (-1, 3, 8, 8))]
    assert probe_points([2, 8], 16, images) == [Point(2, 16, True), Point(8, 16, True)]  # no sequence to vary
    fixed_batch = [InputSpec("input_ids", "INT64", (2, -1))]
    assert probe_points([2], 1, fixed_batch) == [Point(2, 1, True)]


def test_the_note_names_the_runs_and_the_outputs() -> None:
    probes = [probe(1, 16, ("logits", "FP32", (1, 16, 5))), probe(2, 16, ("logits", "FP32", (2, 16, 5)))]
    note = describe(merge(probes), probes, ["a run at 1x8 failed (boom)"])
    assert note == (
        "outputs derived by a dry run (CPU, batch x width 1x16, 2x16): logits FP32 [-1,16,5]; "
        "a run at 1x8 failed (boom), so its dims are taken as fixed"
    )


# ------------------------------------------------------------------ what a model returns


class Pair(NamedTuple):
    logits: torch.Tensor
    pooled: torch.Tensor


def test_observe_flattens_what_the_model_returns() -> None:
    t = torch.zeros(2, 3)
    assert observe(t, "libtorch") == (Observed(None, "FP32", (2, 3)),)
    assert [o.name for o in observe((t, t.long()), "libtorch")] == [None, None]
    assert [o.name for o in observe(Pair(t, t[:, 0]), "libtorch")] == ["logits", "pooled"]
    named = observe({"logits": t, "mask": t > 0}, "python")
    assert named == (Observed("logits", "FP32", (2, 3)), Observed("mask", "BOOL", (2, 3)))
    assert [o.datatype for o in observe([t, t.long()], "python")] == ["FP32", "INT64"]


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ({"logits": torch.zeros(1)}, "returns a dict of tensors, which Triton's libtorch backend cannot serve"),
        ([torch.zeros(1)], "returns a list of tensors, which Triton's libtorch backend cannot serve"),
        ((torch.zeros(1), 3), "output 1 is a int, not a tensor"),
        ({"a": "text"}, "output 'a' is a str, not a tensor"),
        ((), "returns no outputs"),
        (None, "returns a NoneType, not tensors"),
    ],
)
def test_what_triton_cannot_serve_is_refused(out, says: str) -> None:
    with pytest.raises(BackendError, match=_escaped(says)) as refused:
        observe(out, "libtorch" if "libtorch" in says else "python")
    if "libtorch" in says:
        assert "deploy: python" in str(refused.value)


# ------------------------------------------------------------------ dry runs of real TorchScript models


class Tagger(torch.nn.Module):
    """Per-token logits and a pooled vector, from token ids and a mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 6)
        self.head = torch.nn.Linear(6, 5)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return self.head(hidden), hidden.mean(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(input_ids, attention_mask)


class NamedTagger(Tagger):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Pair:  # type: ignore[override]
        logits, pooled = self.encode(input_ids, attention_mask)
        return Pair(logits, pooled)


class DictTagger(Tagger):
    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        logits, _ = self.encode(input_ids, attention_mask)
        return {"logits": logits, "labels": logits.argmax(-1)}


class Positional(torch.nn.Module):
    """A position table of 8 rows: sequences of any other length fail in the model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 4)
        self.positions = torch.nn.Parameter(torch.zeros(8, 4))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids) + self.positions


class Refuses(torch.nn.Module):
    """Scripted: raises its own error for sequences over 8 tokens."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.size(1) > 8:
            raise ValueError("sequences longer than 8 tokens are not supported")
        return input_ids.float()


def saved(module: torch.nn.Module, path: Path, how: str = "script") -> Path:
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13; users still ship it
        warnings.simplefilter("ignore", DeprecationWarning)
        example = (torch.ones(2, 8, dtype=torch.long),) * (2 if isinstance(module, Tagger) else 1)
        compiled = torch.jit.script(module) if how == "script" else torch.jit.trace(module.eval(), example)
        torch.jit.save(compiled, str(path))
    return path


def config(deploy: str = "python", **benchmarking) -> BenchmarkConfig:
    base = {"backend": "triton", "max_length": 16, "batch_sizes": [1, 4], "triton": {"deploy": deploy}}
    return parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "test")


@pytest.mark.parametrize("how", ["trace", "script"])
def test_a_tuple_of_outputs_is_derived(tmp_path: Path, how: str) -> None:
    model = saved(Tagger(), tmp_path / "m.pt", how)
    inputs, outputs, note = dry_run(model, None, [1, 4], 16, "libtorch")
    assert [s.name for s in inputs] == ["input_ids", "attention_mask"]
    assert outputs == [InputSpec("OUTPUT__0", "FP32", (-1, -1, 5)), InputSpec("OUTPUT__1", "FP32", (-1, 6))]
    assert note == (
        "outputs derived by a dry run (CPU, batch x width 1x16, 4x16, 1x8): "
        "OUTPUT__0 FP32 [-1,-1,5]; OUTPUT__1 FP32 [-1,6]"
    )


def test_the_models_own_names_are_kept(tmp_path: Path) -> None:
    _, outputs, _ = dry_run(saved(NamedTagger(), tmp_path / "n.pt"), None, [2], 8, "libtorch")
    assert outputs == [InputSpec("logits", "FP32", (-1, -1, 5)), InputSpec("pooled", "FP32", (-1, 6))]
    _, outputs, _ = dry_run(saved(DictTagger(), tmp_path / "d.pt"), None, [2], 8, "python")
    assert outputs == [InputSpec("logits", "FP32", (-1, -1, 5)), InputSpec("labels", "INT64", (-1, -1))]
    with pytest.raises(BackendError, match="returns a dict of tensors, which Triton's libtorch backend"):
        dry_run(saved(DictTagger(), tmp_path / "d.pt"), None, [2], 8, "libtorch")


@pytest.mark.parametrize(
    ("module", "how", "cause"),
    [
        (Positional(), "trace", "RuntimeError: The size of tensor a (16) must match the size of tensor b (8)"),
        (Refuses(), "script", "ValueError: sequences longer than 8 tokens are not supported"),
    ],
)
def test_a_failing_dry_run_is_refused_with_the_models_error_in_one_line(
    tmp_path: Path, module: torch.nn.Module, how: str, cause: str
) -> None:
    model = saved(module, tmp_path / "m.pt", how)
    with pytest.raises(BackendError) as refused:
        deployment(config().benchmarking, model, "podium-x")
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("the model declares no outputs, and a dry run to learn them on the inputs the")
    assert "(input_ids int64 [1, 16]) failed: " in message and cause in message, message


def test_a_run_at_a_shape_the_benchmark_never_sends_may_fail(tmp_path: Path) -> None:
    """max_length 8, one batch size: the model accepts what the benchmark sends (1x8), not the half width it was
    also tried at (1x4; its position table has 8 rows): that dim is fixed, and the note says why."""
    model = saved(Positional(), tmp_path / "m.pt", "trace")
    _, outputs, note = dry_run(model, None, [1], 8, "python")
    assert outputs == [InputSpec("OUTPUT__0", "FP32", (-1, 8, 4))]
    assert "1x8, 2x8): OUTPUT__0 FP32 [-1,8,4]; a run at 1x4 failed (RuntimeError: The size of tensor" in note


def test_deployment_writes_the_derived_outputs_into_both_formats(tmp_path: Path) -> None:
    """A Transformers-style model traced the way users trace it (no podium signature): its Triton config."""
    model = traced(BertStyleTagger(vocab=1000), tmp_path / "m.pt")
    for deploy, kind in (("libtorch", 'platform: "pytorch_libtorch"'), ("python", 'backend: "python"')):
        made = deployment(config(deploy).benchmarking, model, "podium-x")
        text = to_pbtxt(made.config)
        assert kind in text and "max_batch_size: 4" in text
        assert 'input [{ name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }]' in text
        assert 'input [{ name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }]' in text
        assert 'output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1, 5 ] }]' in text
        assert made.notes == (
            "outputs derived by a dry run (CPU, batch x width 1x16, 4x16, 1x8): OUTPUT__0 FP32 [-1,-1,5]",
        )


def test_a_signature_without_outputs_keeps_its_inputs_and_declared_inputs_win(tmp_path: Path) -> None:
    model = save_torchscript(
        Refuses(), tmp_path / "m.pt", inputs=[{"name": "tokens", "datatype": "INT32", "shape": [-1, -1]}]
    )
    made = deployment(config(max_length=8).benchmarking, model, "podium-x")
    assert made.config["input"] == [{"name": "tokens", "data_type": "TYPE_INT32", "dims": [-1]}]
    assert made.config["output"] == [{"name": "OUTPUT__0", "data_type": "TYPE_FP32", "dims": [-1]}]
    declared = config(max_length=8, inputs=[{"name": "ids", "datatype": "INT64", "shape": [-1, 4]}])
    made = deployment(declared.benchmarking, model, "podium-x")
    assert made.config["input"] == [{"name": "ids", "data_type": "TYPE_INT64", "dims": [4]}]
    assert made.config["output"] == [{"name": "OUTPUT__0", "data_type": "TYPE_FP32", "dims": [4]}]


def test_declared_outputs_are_used_without_a_dry_run(tmp_path: Path) -> None:
    """A signature with outputs is trusted as it is (this model would refuse a dry run at 16 tokens)."""
    model = save_torchscript(
        Refuses(),
        tmp_path / "m.pt",
        inputs=[{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]}],
        outputs=[{"name": "scores", "datatype": "FP32", "shape": [-1, -1]}],
    )
    made = deployment(config().benchmarking, model, "podium-x")
    assert made.notes == () and made.config["output"] == [{"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]}]


def test_the_triton_backend_reports_the_note(tmp_path: Path) -> None:
    """What was derived is among the backend's notes, which a measurement writes into benchmark.json."""
    model = traced(BertStyleTagger(vocab=1000), tmp_path / "m.pt")
    backend = make_backend(config().benchmarking, model_file=model, url="127.0.0.1:1", deployment_name="podium-x")
    try:
        assert backend.notes() == [
            "outputs derived by a dry run (CPU, batch x width 1x16, 4x16, 1x8): OUTPUT__0 FP32 [-1,-1,5]"
        ]
    finally:
        backend.close()


def _escaped(text: str) -> str:
    import re

    return re.escape(text)
