"""Transformers-style token models for tests, saved the way users save them (traced, no podium signature)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


class BertStyleTagger(torch.nn.Module):
    """A token classifier with forward(input_ids, attention_mask[, token_type_ids]); ``width`` sets the cost
    per token (two dense layers of ``width`` x 4 ``width``), so time follows sequence length."""

    def __init__(self, vocab: int = 100, types: bool = False, width: int = 8):
        super().__init__()
        self.embeddings = torch.nn.Embedding(vocab, width)
        self.type_embeddings = torch.nn.Embedding(2, width) if types else None
        self.dense = torch.nn.Sequential(
            torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width)
        )
        self.classifier = torch.nn.Linear(width, 5)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.embeddings(input_ids)
        if self.type_embeddings is not None:
            hidden = hidden + self.type_embeddings(token_type_ids)
        hidden = hidden + self.dense(hidden)
        return self.classifier(hidden * attention_mask.unsqueeze(-1))


def example_inputs(types: bool = False) -> tuple[torch.Tensor, ...]:
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    return example + ((torch.zeros(2, 8, dtype=torch.long),) if types else ())


def traced(model: torch.nn.Module, path: Path, types: bool = False, extra: dict[str, str] | None = None) -> Path:
    """``torch.jit.trace`` + ``torch.jit.save`` (with ``extra`` files in the archive), as a user exports."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13; users still ship it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(model.eval(), example_inputs(types)), str(path), _extra_files=extra or {})
    return path


def exported_onnx(model: torch.nn.Module, path: Path, types: bool = False) -> Path:
    """``torch.onnx.export`` with dynamic batch and sequence dims, as a user exports a token model."""
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the exporter's own deprecation and rename notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            example_inputs(types),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
            verbose=False,
        )
    return path
