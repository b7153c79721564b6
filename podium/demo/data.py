"""A synthetic token-tagging task: learnable, with context, so width and depth matter a little."""

from __future__ import annotations

import torch

from podium.demo.model import NUM_LABELS, VOCAB


def make_batch(generator: torch.Generator, batch: int = 32, length: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens below VOCAB/2 are tagged by their own id, the others by the previous token's."""
    tokens = torch.randint(1, VOCAB, (batch, length), generator=generator)
    own = tokens % NUM_LABELS
    prev = torch.roll(tokens, 1, dims=1) % NUM_LABELS
    prev[:, 0] = 0
    labels = torch.where(tokens < VOCAB // 2, own, prev)
    return tokens, labels


def macro_f1(predicted: torch.Tensor, labels: torch.Tensor, num_labels: int = NUM_LABELS) -> float:
    scores = []
    for k in range(num_labels):
        tp = ((predicted == k) & (labels == k)).sum().item()
        fp = ((predicted == k) & (labels != k)).sum().item()
        fn = ((predicted != k) & (labels == k)).sum().item()
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / num_labels
