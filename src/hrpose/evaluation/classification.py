"""Top-k accuracy for the classifier (pure torch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """Number of samples whose target is among the k highest logits, for each k."""
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hit = top == targets[:, None]
    return {f"top{k}": int(hit[:, : min(k, k_max)].any(1).sum()) for k in ks}


class TopkAccuracy:
    """Accumulates top-k hits over batches; ``compute()`` gives percentages."""

    def __init__(self, ks: Sequence[int] = (1, 5)) -> None:
        self.ks = tuple(ks)
        self.hits = dict.fromkeys((f"top{k}" for k in self.ks), 0)
        self.count = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        for name, n in topk_correct(logits, targets, self.ks).items():
            self.hits[name] += n
        self.count += int(targets.shape[0])

    def compute(self) -> dict[str, float]:
        return {k: 100.0 * v / max(self.count, 1) for k, v in self.hits.items()}
