"""Inference rewrite: fold each eval-mode BatchNorm into the convolution before it.

A BatchNorm in eval mode is a per-channel affine map, so ``bn(conv(x))`` equals one convolution
with rescaled weights and a bias, up to float rounding. The fused network skips 300-odd
BatchNorm passes over the feature maps. It is a copy for inference: its state dict differs
(no ``bn*`` tensors, biases on the convolutions), so checkpoints always come from the original.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
# Residual blocks and the HRNet stem name their conv/BN pairs as attributes (official names).
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fused(conv: nn.Module, bn: nn.Module) -> nn.Module:
    return fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))


def _is_pair(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    return isinstance(conv, _CONVS) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats


def conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, nn.BatchNorm2d]]:
    """Every (convolution, BatchNorm after it) of ``model``: adjacent entries of an
    ``nn.Sequential`` and the ``convN``/``bnN`` attributes of HRNet's blocks and stem."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            items = list(module)
            for conv, bn in zip(items, items[1:], strict=False):
                if _is_pair(conv, bn):
                    yield conv, bn
        for conv_name, bn_name in _PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _is_pair(conv, bn):
                yield conv, bn


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every conv -> BatchNorm pair folded into one conv.

    Pairs are those of :func:`conv_bn_pairs`; the folded BatchNorm becomes ``nn.Identity``.
    ``model`` is unchanged. A quantization-aware network (its convolutions fold their
    BatchNorm themselves, :mod:`hrpose.models.qat`) is copied as it is.
    """
    fused = copy.deepcopy(model).eval()
    if getattr(fused, "qat", False):
        return fused
    replace = {id(conv): (_fused(conv, bn), bn) for conv, bn in conv_bn_pairs(fused)}
    folded = {id(bn) for _, bn in replace.values()}
    for module in list(fused.modules()):
        for name, child in module.named_children():
            if id(child) in replace:
                setattr(module, name, replace[id(child)][0])
            elif id(child) in folded:
                setattr(module, name, nn.Identity())
    return fused
