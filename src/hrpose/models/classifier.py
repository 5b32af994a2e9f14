"""HRNet-C image classifier; module names as in the official HRNet-Image-Classification."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrpose.models.blocks import BN_MOMENTUM, Bottleneck, make_layer
from hrpose.models.hrnet import HRNet

HEAD_CHANNELS = (32, 64, 128, 256)
FINAL_CHANNELS = 2048


class HRNetClassifier(HRNet):
    """HRNet backbone + official classification head (incre, downsample, 1x1 to 2048, linear)."""

    def __init__(self, width: int = 32, num_classes: int = 1000, init_weights: bool = True) -> None:
        super().__init__(width, multi_scale_output=True)
        self.num_classes = num_classes
        head = [c * Bottleneck.expansion for c in HEAD_CHANNELS]
        self.incre_modules = nn.ModuleList(
            make_layer(Bottleneck, c_in, c_head, 1)
            for c_in, c_head in zip(self.out_channels, HEAD_CHANNELS, strict=True)
        )
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(head[i], head[i + 1], 3, 2, 1),
                nn.BatchNorm2d(head[i + 1], momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            )
            for i in range(len(head) - 1)
        )
        self.final_layer = nn.Sequential(
            nn.Conv2d(head[-1], FINAL_CHANNELS, 1, 1, 0),
            nn.BatchNorm2d(FINAL_CHANNELS, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(FINAL_CHANNELS, num_classes)
        if init_weights:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: Kaiming-normal convs (fan_out), BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_head(self, features: list[Tensor]) -> Tensor:
        """Pooled 2048-d embedding from the four stage-4 branches."""
        y = self.incre_modules[0](features[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](features[i + 1]) + down(y)
        y = self.final_layer(y)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.classifier(self.forward_head(self.forward_features(x)))
