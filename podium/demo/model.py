"""A tiny token tagger (embedding, ``depth`` residual MLP blocks, a classifier) and its TorchScript export."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from podium.backends.torchscript import save_scripted, torchscript_on_purpose

VOCAB = 1000
NUM_LABELS = 5


class TinyTagger(nn.Module):
    def __init__(self, width: int = 32, depth: int = 1, vocab: int = VOCAB, num_labels: int = NUM_LABELS):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
            for _ in range(depth)
        )
        self.head = nn.Linear(width, num_labels)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


def export(model: nn.Module, path: Path, vocab: int = VOCAB, num_labels: int = NUM_LABELS) -> Path:
    """Save as TorchScript with its signature (token ids in, per-token logits out)."""
    model.eval()
    with torchscript_on_purpose():
        scripted = torch.jit.script(model)
    signature = {
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1], "vocab_size": vocab}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, -1, num_labels]}],
    }
    return save_scripted(scripted, path, signature)
