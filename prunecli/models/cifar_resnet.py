"""CIFAR ResNets (He et al., CVPR 2016, §4.2): 3 stages of 16/32/64 channels, depth 6n+2.

Shortcuts that change shape are 1×1 conv + BN projections ("option B"), as in Torch-Pruning's
reproduction models: the zero-padding shortcut ("option A") is not a prunable layer and would
pin the residual channels.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from prunecli.models import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_planes = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, w, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _register(depth: int) -> None:
    @register_model(
        f"resnet{depth}",
        family="cifar_resnet",
        description=f"CIFAR ResNet-{depth} (16/32/64 channels, {(depth - 2) // 6} blocks per stage)",
    )
    def build(num_classes: int = 10):
        return CifarResNet(depth, num_classes)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)


@register_model(
    "resnet_tiny", family="cifar_resnet", description="tiny CIFAR ResNet-8 (8/16/32) for tests", tiny=True
)
def resnet_tiny(num_classes: int = 10):
    return CifarResNet(8, num_classes, widths=(8, 16, 32))
