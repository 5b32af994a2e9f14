"""Parameter and multiply-add counts of a model for one input size (convs, deconvs, linears)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSummary:
    """Counts for one forward pass of a single image."""

    params: int
    macs: int  # true multiply-adds
    macs_dense_deconv: int  # transposed convs counted as dense convs on the output grid

    def format(self) -> str:
        return (
            f"parameters: {self.params:,} ({self.params / 1e6:.2f} M)\n"
            f"multiply-adds: {self.macs / 1e9:.2f} G "
            f"(transposed convs counted densely on their output, as some papers do: "
            f"{self.macs_dense_deconv / 1e9:.2f} G)"
        )


def summarize(model: nn.Module, input_size: tuple[int, int]) -> ModelSummary:
    """Count parameters and MACs for a (height, width) RGB input, batch 1, on the CPU/meta."""
    true_macs = 0
    dense_extra = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal true_macs, dense_extra
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            per = module.out_channels // module.groups * k
            true_macs += x.numel() * per
            dense = output.numel() * (module.in_channels // module.groups) * k
            dense_extra += dense - x.numel() * per
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            true_macs += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            true_macs += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return ModelSummary(params, true_macs, true_macs + dense_extra)
