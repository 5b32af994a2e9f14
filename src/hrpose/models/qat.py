"""Quantization-aware training: the network computes as its static INT8 ONNX graph will.

:func:`prepare_qat` changes a HigherHRNet in place so that its forward pass rounds where
``hrpose quantize`` (ONNX Runtime QDQ) rounds, while the parameters stay fp32 and trainable:

- each convolution folds the BatchNorm after it (its running statistics frozen, its weight and
  bias still learnt) and rounds the folded weight to int8 per output channel in the 7-bit range
  (symmetric, scale = max |w| / 64), as ONNX Runtime does with ``reduce_range``;
- every activation ONNX Runtime quantizes is rounded to uint8 per tensor with a min/max range
  (including 0) followed by an exponential moving average in training and frozen in eval: the
  network input, each folded convolution's output (after its ReLU when one follows), each
  residual sum and each partial sum of a fusion (the last after its ReLU), the 1/4 heatmaps and
  tags where the deconvolution reads them, and that concatenation (a nearest Resize keeps its
  input's range, so it needs none);
- the two ``final_layers`` convolutions stay fp32, as in the INT8 file.

Gradients pass the rounding straight through (zero outside the range). Module classes change,
attribute names and the state dict do not: a QAT checkpoint loads into a plain HigherHRNet and
``hrpose quantize`` turns it into the INT8 file. The running ranges are not saved (non-persistent
buffers); quantizing calibrates its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrpose.models.blocks import HighResolutionModule
from hrpose.models.fuse import conv_bn_pairs
from hrpose.models.higher_hrnet import HigherHRNet
from hrpose.structures import PoseOutput

WEIGHT_QMAX = 64  # int8 in the 7-bit range: q in [-64, 64], as ONNX Runtime's reduce_range
ACT_QMAX = 255  # uint8 activations
EMA = 0.01  # weight of a new batch in the running min/max (torch's moving-average observer)
HEAD = "final_layers"


class ActivationQuant(nn.Module):
    """Rounds a tensor to uint8 on its running [min, max] range (widened to include 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("lo", torch.zeros(()), persistent=False)
        self.register_buffer("hi", torch.zeros(()), persistent=False)
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.detach().min().float(), x.detach().max().float()
                if bool(self.seen):
                    lo, hi = torch.lerp(self.lo, lo, EMA), torch.lerp(self.hi, hi, EMA)
                self.lo.copy_(lo), self.hi.copy_(hi), self.seen.fill_(True)
        elif not bool(self.seen):
            raise RuntimeError(
                "a QAT network in eval mode before any training batch: its activation ranges "
                "are unset; run training batches first"
            )
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        scale = torch.clamp((hi - lo) / ACT_QMAX, min=1e-8)
        zero = torch.clamp(torch.round(-lo / scale), 0, ACT_QMAX).to(torch.int32)
        out = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero, 0, ACT_QMAX)
        return out.to(x.dtype)


def quantize_weight(w: Tensor, axis: int) -> Tensor:
    """``w`` rounded to int8 per channel along ``axis`` in the 7-bit range, straight-through."""
    dims = [d for d in range(w.dim()) if d != axis]
    scale = torch.clamp(w.detach().abs().amax(dim=dims) / WEIGHT_QMAX, min=1e-12)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, axis, -WEIGHT_QMAX,
                                                  WEIGHT_QMAX)  # fmt: skip


class QATConv2d(nn.Conv2d):
    """A Conv2d that folds its BatchNorm (frozen statistics) and rounds the folded weight."""

    folds_batchnorm = True
    bn: nn.BatchNorm2d | None
    quant_in: ActivationQuant | None

    def folded(self) -> tuple[Tensor, Tensor | None]:
        """(folded weight, folded bias) with the BatchNorm's statistics held fixed."""
        return fold(self.weight, self.bias, self.bn, out_axis=0)

    def forward(self, x: Tensor) -> Tensor:
        if self.quant_in is not None:
            x = self.quant_in(x)
        w, b = self.folded()
        return F.conv2d(x, quantize_weight(w, 0), b, self.stride, self.padding, self.dilation,
                        self.groups)  # fmt: skip


class QATConvTranspose2d(nn.ConvTranspose2d):
    """A ConvTranspose2d (weight: in, out, kh, kw) folding and rounding as :class:`QATConv2d`."""

    folds_batchnorm = True
    bn: nn.BatchNorm2d | None
    quant_in: ActivationQuant | None

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.quant_in is not None:
            x = self.quant_in(x)
        w, b = fold(self.weight, self.bias, self.bn, out_axis=1)
        return F.conv_transpose2d(x, quantize_weight(w, 1), b, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)  # fmt: skip


class FoldedBatchNorm(nn.BatchNorm2d):
    """A BatchNorm its convolution has folded: passes its input on, rounded unless a ReLU
    follows (the ReLU rounds then, as ONNX Runtime quantizes after the fused activation)."""

    quant_out: ActivationQuant | None

    def forward(self, x: Tensor) -> Tensor:
        return x if self.quant_out is None else self.quant_out(x)


class QuantReLU(nn.ReLU):
    """A ReLU whose output is rounded to uint8 (a convolution's or a sum's quantized output).

    HRNet's blocks call one ReLU module at several points (after a convolution, after the
    residual sum); each call site gets its own range, taken in call order (``sites`` per
    forward, the counter reset by the root's forward pre-hook)."""

    quant_out: nn.ModuleList
    calls: int

    def forward(self, x: Tensor) -> Tensor:
        site = self.calls % len(self.quant_out)
        self.calls += 1
        return self.quant_out[site](F.relu(x))


def _reset_relu_calls(model: nn.Module, _args: object) -> None:
    for m in model.modules():
        if isinstance(m, QuantReLU):
            m.calls = 0


class QATHighResolutionModule(HighResolutionModule):
    """HRNet's multi-resolution module with each partial sum of a fusion rounded, as ONNX
    Runtime rounds the output of every Add of the chain (the last one after its ReLU)."""

    partial_sums: nn.ModuleList  # one per (row, partial sum), row by row

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x, strict=True)]
        if self.fuse_layers is None:
            return x
        fused, quant = [], iter(self.partial_sums)
        for i, row in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else row[0](x[0])
            for j in range(1, self.num_branches):
                y = y + (x[j] if i == j else row[j](x[j]))
                if j < self.num_branches - 1:
                    y = next(quant)(y)
            fused.append(self.relu(y))
        return fused


class QATHigherHRNet(HigherHRNet):
    """HigherHRNet whose heads round the 1/4 heatmaps and tags where the deconvolution reads
    them (the Concat input; the output itself stays fp32, as in the INT8 file)."""

    quant_low: ActivationQuant

    def forward_heads(self, feat: Tensor) -> PoseOutput:
        low = self.final_layers[0](feat)
        feat = self.deconv_layers[0](torch.cat((feat, self.quant_low(low)), 1))
        return PoseOutput(low, self.final_layers[1](feat))


def fold(
    weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d | None, out_axis: int
) -> tuple[Tensor, Tensor | None]:
    """Weight and bias of a convolution with the eval-mode BatchNorm ``bn`` folded in."""
    if bn is None:
        return weight, bias
    assert bn.running_var is not None and bn.running_mean is not None
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
    k = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = [1] * weight.dim()
    shape[out_axis] = -1
    b = torch.zeros_like(bn.running_mean) if bias is None else bias
    return weight * k.reshape(shape), beta + (b - bn.running_mean) * k


def _relus_after_bn(model: nn.Module) -> set[int]:
    """ids of the BatchNorms a ReLU follows directly (``nn.Sequential`` neighbours and the
    ``bnN``/``relu`` attributes of the stem and the residual blocks)."""
    from hrpose.models.blocks import BasicBlock, Bottleneck
    from hrpose.models.hrnet import HRNet

    out: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            items = list(m)
            for a, b in zip(items, items[1:], strict=False):
                if isinstance(a, nn.BatchNorm2d) and isinstance(b, nn.ReLU):
                    out.add(id(a))
        names = {BasicBlock: ("bn1",), Bottleneck: ("bn1", "bn2"), HRNet: ("bn1", "bn2")}
        for kind, bns in names.items():
            if isinstance(m, kind):
                out.update(id(getattr(m, n)) for n in bns)
    return out


def _relu_sites(model: nn.Module) -> dict[nn.ReLU, int]:
    """Every ReLU module and the number of times one forward pass calls it."""
    from hrpose.models.blocks import BasicBlock, Bottleneck, HighResolutionModule
    from hrpose.models.hrnet import HRNet

    sites = {m: 1 for m in model.modules() if type(m) is nn.ReLU}
    for m in model.modules():
        if isinstance(m, BasicBlock | HRNet):  # after conv1 (stem: conv1, conv2) and the sum
            sites[m.relu] = 2
        elif isinstance(m, Bottleneck):
            sites[m.relu] = 3
        elif isinstance(m, HighResolutionModule):
            sites[m.relu] = len(m.fuse_layers) if m.fuse_layers is not None else 0
    return {relu: n for relu, n in sites.items() if n}


def prepare_qat(model: nn.Module) -> nn.Module:
    """Make a HigherHRNet train and run as its INT8 graph computes (see the module docstring);
    in place, returns ``model``. Train it with BatchNorm statistics frozen: they are folded."""
    if getattr(model, "qat", False):
        return model
    if type(model) is not HigherHRNet:  # checked before anything changes
        raise ValueError(f"prepare_qat takes a HigherHRNet, not {type(model).__name__}")
    head = getattr(model, HEAD, None)
    keep = {id(m) for m in head.modules()} if head is not None else set()
    relu_follows = _relus_after_bn(model)
    paired: set[int] = set()
    for conv, bn in conv_bn_pairs(model):
        if id(conv) in keep:
            continue
        conv.__class__ = QATConvTranspose2d if isinstance(conv, nn.ConvTranspose2d) else QATConv2d
        object.__setattr__(conv, "bn", bn)  # a reference, not a submodule: the keys stay
        conv.quant_in = None
        bn.__class__ = FoldedBatchNorm
        bn.quant_out = None if id(bn) in relu_follows else ActivationQuant()
        paired.add(id(conv))
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and id(m) not in keep | paired:
            raise ValueError(f"prepare_qat: a convolution without BatchNorm outside {HEAD}: {m}")
    for relu, sites in _relu_sites(model).items():
        relu.__class__ = QuantReLU
        relu.inplace = False
        relu.quant_out = nn.ModuleList(ActivationQuant() for _ in range(sites))
        relu.calls = 0
    model.register_forward_pre_hook(_reset_relu_calls)
    for m in model.modules():
        if type(m) is HighResolutionModule and m.fuse_layers is not None:
            m.__class__ = QATHighResolutionModule
            partial = len(m.fuse_layers) * (m.num_branches - 2)
            m.partial_sums = nn.ModuleList(ActivationQuant() for _ in range(partial))
    model.__class__ = QATHigherHRNet
    model.quant_low = ActivationQuant()
    model.conv1.quant_in = ActivationQuant()  # the network input
    deconv = model.deconv_layers[0][0][0]  # reads the concatenation of features and heatmaps
    deconv.quant_in = ActivationQuant()
    model.qat = True
    return model
