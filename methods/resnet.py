"""CIFAR ResNet-20 (He et al. 2016, the 6n+2 network with n = 3), with DCTNet's surgery:
the input may enter at a later stage, the layers before it removed (`methods.dct`).

Not a registered method on its own: `dct-select` uses it as its `resnet20` architecture,
with the RGB image (stem + stages 1-3) or the DCT tensor at 1/2 or 1/4 of the input size.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """CIFAR ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU. Projection
    shortcut (1x1 conv + BN) where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


RESNET20_WIDTHS = (16, 32, 64)
RESNET20_BLOCKS = 3


def resnet20(in_channels: int, num_classes: int, start_stage: int = 0) -> nn.Sequential:
    """CIFAR ResNet-20 from stage `start_stage` on. start_stage 0: stem (3x3, 16) + stages
    1-3 (the RGB network). start_stage k >= 1: the stem and stages before k are removed and
    the input (C channels at that stage's resolution) enters stage k's first block at
    stride 1 (DCTNet's surgery: only the layers that see the input change width)."""
    layers: list[nn.Module] = []
    c = in_channels
    if start_stage == 0:
        layers += [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        c = 16
    for s, width in enumerate(RESNET20_WIDTHS):
        if s < start_stage:
            continue
        for i in range(RESNET20_BLOCKS):
            stride = 2 if (i == 0 and s > start_stage and s > 0) else 1
            layers.append(BasicBlock(c, width, stride))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net
