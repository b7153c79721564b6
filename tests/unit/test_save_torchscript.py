"""``save_torchscript`` keeps scripted and traced modules, and traces a module whose source cannot be read."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from podium.backends.inputs import build_inputs
from podium.backends.torchscript import TorchScriptBackend
from podium.errors import BackendError
from podium.training import save_torchscript

INPUTS = [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "vocab_size": 50}]

#: Defined by exec, as in a notebook cell or on stdin: inspect cannot read its source, so it cannot be scripted.
SOURCE = textwrap.dedent(
    """
    class NotebookTagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, input_ids):
            return self.head(self.embed(input_ids))
    """
)


def notebook_module() -> torch.nn.Module:
    scope: dict = {"torch": torch}
    exec(SOURCE, scope)
    return scope["NotebookTagger"]()


def measured_once(path: Path) -> torch.Tensor:
    backend = TorchScriptBackend(path, "cpu")
    specs = backend.prepare()
    return backend.bind(build_inputs(specs, 2, 8))()


def test_a_module_without_readable_source_is_traced(tmp_path: Path) -> None:
    module = notebook_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(Exception):  # noqa: B017 - the premise: plain scripting fails on it
            torch.jit.script(module)
    path = save_torchscript(module, tmp_path / "m.pt", inputs=INPUTS)
    assert measured_once(path).shape == (2, 8, 3)
    assert module.training  # its mode is given back


def test_a_traced_module_is_kept(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(notebook_module().eval(), (torch.zeros(1, 4, dtype=torch.int64),))
    path = save_torchscript(traced, tmp_path / "t.pt", inputs=INPUTS)
    assert measured_once(path).shape == (2, 8, 3)


def test_without_usable_inputs_it_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"cannot trace it without inputs: pass inputs=\["):
        save_torchscript(notebook_module(), tmp_path / "x.pt", inputs=[{"name": "input_ids"}])
