"""HRNet backbone (stem, stage 1, transitions, stages 2-4) shared by the classifier and HigherHRNet.

The width (18, 32, 48 ...) sets the branch channels ``[w, 2w, 4w, 8w]``; the stage layout is the
official one (1, 4 and 3 modules of 4 BasicBlocks in stages 2, 3 and 4).
"""

from __future__ import annotations

from torch import Tensor, nn

from hrpose.models.blocks import (
    BN_MOMENTUM,
    Bottleneck,
    HighResolutionModule,
    conv3x3,
    make_layer,
)

STAGE_MODULES = (1, 4, 3)  # stages 2, 3, 4
BLOCKS_PER_BRANCH = 4
STEM_CHANNELS = 64


def branch_channels(width: int) -> list[int]:
    """Channels of the four HRNet branches for a given width."""
    if width <= 0:
        raise ValueError(f"HRNet width must be positive, got {width}")
    return [width, 2 * width, 4 * width, 8 * width]


def make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Official transition layer: adapt existing branches, create a new one by a strided conv."""
    layers: list[nn.Module | None] = []
    for i, out_c in enumerate(cur):
        if i < len(pre):
            if out_c != pre[i]:
                layers.append(
                    nn.Sequential(
                        conv3x3(pre[i], out_c), nn.BatchNorm2d(out_c), nn.ReLU(inplace=True)
                    )
                )
            else:
                layers.append(None)
        else:
            steps = []
            for j in range(i + 1 - len(pre)):
                in_c = pre[-1]
                step_out = out_c if j == i - len(pre) else in_c
                steps.append(
                    nn.Sequential(
                        conv3x3(in_c, step_out, 2), nn.BatchNorm2d(step_out), nn.ReLU(inplace=True)
                    )
                )
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def make_stage(channels: list[int], num_modules: int, multi_scale_output: bool) -> nn.Sequential:
    """A stage of ``num_modules`` HighResolutionModules; only the last may drop low resolutions."""
    modules = [
        HighResolutionModule(
            channels,
            BLOCKS_PER_BRANCH,
            multi_scale_output=multi_scale_output or i < num_modules - 1,
        )
        for i in range(num_modules)
    ]
    return nn.Sequential(*modules)


class HRNet(nn.Module):
    """HRNet feature extractor; ``forward`` returns the stage-4 feature list (high res first).

    ``multi_scale_output=False`` keeps only the 1/4-resolution branch at the end (pose models).
    """

    def __init__(self, width: int = 32, multi_scale_output: bool = True) -> None:
        super().__init__()
        self.width = width
        channels = branch_channels(width)
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, STEM_CHANNELS, 64, 4)
        stage1_out = 64 * Bottleneck.expansion

        self.transition1 = make_transition([stage1_out], channels[:2])
        self.stage2 = make_stage(channels[:2], STAGE_MODULES[0], True)
        self.transition2 = make_transition(channels[:2], channels[:3])
        self.stage3 = make_stage(channels[:3], STAGE_MODULES[1], True)
        self.transition3 = make_transition(channels[:3], channels)
        self.stage4 = make_stage(channels, STAGE_MODULES[2], multi_scale_output)
        self.out_channels = channels if multi_scale_output else channels[:1]

    @staticmethod
    def _transit(transition: nn.ModuleList, features: list[Tensor]) -> list[Tensor]:
        out = []
        for i, layer in enumerate(transition):
            if layer is None:
                out.append(features[i])
            else:
                out.append(layer(features[min(i, len(features) - 1)]))
        return out

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Stem and stages 1-4; returns the branch outputs of stage 4."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        y = self.stage2(self._transit(self.transition1, [x]))
        y = self.stage3(self._transit(self.transition2, y))
        return self.stage4(self._transit(self.transition3, y))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_features(x)
