"""HigherHRNet (Cheng et al., CVPR 2020): HRNet + one deconvolution stage for 1/2-resolution maps.

Module names follow the official ``pose_higher_hrnet`` so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrpose.models.blocks import BN_MOMENTUM, BasicBlock
from hrpose.models.hrnet import HRNet
from hrpose.structures import PoseOutput

DECONV_BLOCKS = 4


class HigherHRNet(HRNet):
    """Bottom-up pose network: K heatmaps + K tag maps at 1/4, K heatmaps at 1/2 resolution.

    Input height and width must be multiples of 32.
    """

    def __init__(self, width: int = 32, num_joints: int = 17, init_weights: bool = True) -> None:
        super().__init__(width, multi_scale_output=False)
        self.num_joints = num_joints
        k = num_joints
        self.final_layers = nn.ModuleList(
            [nn.Conv2d(width, 2 * k, 1, 1, 0), nn.Conv2d(width, k, 1, 1, 0)]
        )
        deconv = nn.Sequential(
            nn.Sequential(
                nn.ConvTranspose2d(width + 2 * k, width, 4, 2, 1, 0, bias=False),
                nn.BatchNorm2d(width, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ),
            *[nn.Sequential(BasicBlock(width, width)) for _ in range(DECONV_BLOCKS)],
        )
        self.deconv_layers = nn.ModuleList([deconv])
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: conv and deconv weights N(0, 0.001), BN 1/0, biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> PoseOutput:  # type: ignore[override]
        h, w = x.shape[-2:]
        if not torch.jit.is_tracing() and (h % 32 or w % 32):
            raise ValueError(
                f"HigherHRNet input height and width must be multiples of 32, got {h}x{w}"
            )
        return self.forward_heads(self.forward_features(x)[0])

    def forward_heads(self, feat: Tensor) -> PoseOutput:
        """The heads on the backbone's (N, width, H/4, W/4) features: the 1/4 heatmaps and
        tags, the deconvolution stage and the 1/2 heatmaps (a split point for precisions)."""
        low = self.final_layers[0](feat)
        feat = self.deconv_layers[0](torch.cat((feat, low), 1))
        high = self.final_layers[1](feat)
        return PoseOutput(low, high)
